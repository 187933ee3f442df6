#!/usr/bin/env python3
"""Topic aliases from the broker to an Eclipse paho-mqtt MQTT 5.0 client, and a shared group.

Usage: paho_alias.py --port PORT [--host HOST] [--timeout SECONDS] [--max N]

A paho subscriber announces Topic Alias Maximum N (CONNECT property) and subscribes to
"<base>/#"; a paho publisher sends QoS 1 messages on a sequence of topics that needs more than
N aliases. The subscriber checks what arrived as paho decoded it: every alias is within 1..N,
a topic is sent with its alias before the alias is used alone (empty topic), and resolving the
aliases (paho 1.6 leaves that to the application; 2.x as well for incoming aliases) gives back
exactly the published topics, in order, each payload once. Then two paho clients in the shared
group "$share/g/<base>/s" get each of 6 messages exactly once between them.
Exits 0 after printing "OK", or 1 after "FAIL: <what>" on stderr. Every wait is bounded.
"""

import argparse
import queue
import sys
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Failure(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failure(what)


def code(value):
    return int(getattr(value, "value", value))


class Client:
    def __init__(self, name, args, alias_max=None):
        self.name = name
        self.args = args
        self.alias_max = alias_max
        client_id = "%s-%s" % (name, uuid.uuid4().hex[:8])
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt >= 2.0
            self.client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
            )
        else:
            self.client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.messages = queue.Queue()
        self.client.on_connect = lambda _c, _u, flags, rc, *_p: self.connack.put(code(rc))
        self.client.on_subscribe = lambda _c, _u, mid, granted, *_p: self.subacks.put(mid)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)

    def connect(self):
        properties = None
        if self.alias_max is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.TopicAliasMaximum = self.alias_max
        self.client.connect(self.args.host, self.args.port, 60, clean_start=True,
                            properties=properties)
        self.client.loop_start()
        try:
            rc = self.connack.get(timeout=self.args.timeout)
        except queue.Empty:
            raise Failure("%s: no CONNACK" % self.name)
        check(rc == 0, "%s: CONNACK refused with %#x" % (self.name, rc))
        return self

    def subscribe(self, topic):
        result, mid = self.client.subscribe(topic, 1)
        check(result == mqtt.MQTT_ERR_SUCCESS, "%s: subscribe %s failed" % (self.name, topic))
        try:
            while self.subacks.get(timeout=self.args.timeout) != mid:
                pass
        except queue.Empty:
            raise Failure("%s: no SUBACK for %s" % (self.name, topic))

    def publish(self, topic, payload):
        info = self.client.publish(topic, payload, 1)
        info.wait_for_publish(self.args.timeout)
        check(info.is_published(), "%s: publish to %s not completed" % (self.name, topic))

    def receive(self, what):
        try:
            return self.messages.get(timeout=self.args.timeout)
        except queue.Empty:
            raise Failure("%s: nothing received, expected %s" % (self.name, what))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def run(args):
    base = "alias/%s" % uuid.uuid4().hex[:8]
    sub = Client("sub", args, alias_max=args.max).connect()
    sub.subscribe(base + "/#")
    pub = Client("pub", args).connect()
    names = ["temperature", "humidity", "pressure", "voltage"][: args.max + 1]
    sequence = [names[i % len(names)] for i in range(4 * len(names))] + names[:2] * 3
    topics = ["%s/site-0042/line-7/%s" % (base, n) for n in sequence]
    for i, topic in enumerate(topics):
        pub.publish(topic, b"%d" % i)

    known = {}
    aliased = 0
    for i, topic in enumerate(topics):
        m = sub.receive(topic)
        props = getattr(m, "properties", None)
        alias = getattr(props, "TopicAlias", None) if props is not None else None
        check(alias is not None, "message %d arrived without a topic alias" % i)
        check(1 <= alias <= args.max, "alias %d outside 1..%d" % (alias, args.max))
        if m.topic:
            known[alias] = m.topic
        else:
            check(alias in known, "alias %d used before it was sent with a topic" % alias)
            aliased += 1
        resolved = m.topic or known[alias]
        check(resolved == topic, "message %d: resolved %r, published %r" % (i, resolved, topic))
        check(m.payload == b"%d" % i, "message %d: payload %r" % (i, m.payload))
    check(aliased > 0, "no message used an alias alone")

    # A shared group of two paho clients: each message to exactly one of them.
    members = [Client("member%d" % i, args).connect() for i in range(2)]
    for m in members:
        m.subscribe("$share/g/%s/s" % base)
    for i in range(6):
        pub.publish("%s/s" % base, b"s%d" % i)
    got = []
    while len(got) < 6:
        before = len(got)
        for m in members:
            try:
                got.append(m.messages.get(timeout=0.05).payload)
            except queue.Empty:
                pass
        if len(got) == before:
            got.append(members[0].receive("shared message").payload)
    check(sorted(got) == sorted(b"s%d" % i for i in range(6)), "shared group got %r" % got)
    for m in members:
        check(m.messages.empty(), "%s got a message twice" % m.name)
    for c in [sub, pub] + members:
        c.close()
    print("OK %d messages, %d by alias alone" % (len(topics), aliased))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--max", type=int, default=3)
    args = parser.parse_args()
    try:
        run(args)
    except Failure as failure:
        print("FAIL: %s" % failure, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
