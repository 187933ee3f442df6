#!/usr/bin/env python3
"""Interoperability check of a broker with the Eclipse paho-mqtt Python client.

Usage: paho_check.py --port PORT --protocol {31,311,5} [--host HOST] [--timeout SECONDS]
                     [--cafile CA.pem [--certfile CERT.pem --keyfile KEY.pem]]
                     [--websocket PATH]

With --cafile every client connects over TLS, verifying the broker with that CA (and the host
name); --certfile/--keyfile add a client certificate. With --websocket every client speaks MQTT
over WebSockets (paho's transport="websockets") to that HTTP path (over TLS with --cafile).

Works with paho-mqtt 1.6.x (Debian 12's python3-paho-mqtt) and 2.x (callback API VERSION2,
whose callbacks take the same leading arguments as 1.6's). Connects a subscriber and a publisher, publishes QoS 0, 1 and 2, checks each
arrives once at its QoS, checks retained messages (kept, delivered with the retain flag to a
late subscriber, deleted by an empty retained payload) and, for MQTT 5.0, that a user property
survives the trip. Exits 0 after printing "OK", or 1 after printing "FAIL: <what>" to stderr.
Every wait is bounded by --timeout.
"""

import argparse
import queue
import sys
import threading
import uuid

import paho.mqtt
import paho.mqtt.client as mqtt

PROTOCOLS = {"31": mqtt.MQTTv31, "311": mqtt.MQTTv311, "5": mqtt.MQTTv5}


class Failure(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failure(what)


def code(value):
    """An int from a 3.x return code or a 5.0 ReasonCodes object."""
    return int(getattr(value, "value", value))


class Client:
    """A paho client with its network loop in a thread and queues for what it receives."""

    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.v5 = args.protocol == "5"
        kwargs = {
            "client_id": "%s-%s" % (name, uuid.uuid4().hex[:8]),
            "protocol": PROTOCOLS[args.protocol],
        }
        if not self.v5:
            kwargs["clean_session"] = True
        if args.websocket:
            kwargs["transport"] = "websockets"
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt >= 2.0
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        else:
            self.client = mqtt.Client(**kwargs)
        if args.websocket:
            self.client.ws_set_options(path=args.websocket)
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.messages = queue.Queue()
        if args.cafile:
            self.client.tls_set(ca_certs=args.cafile, certfile=args.certfile, keyfile=args.keyfile)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # 1.6 passes properties only for 5.0, 2.x always: take them as *args. Codes are ints
    # (1.6, 3.x) or ReasonCode objects (1.6 with 5.0, and 2.x): see code().
    def _on_connect(self, _client, _userdata, flags, rc, *_properties):
        self.connack.put((flags, code(rc)))

    def _on_subscribe(self, _client, _userdata, mid, granted, *_properties):
        self.subacks.put((mid, [code(g) for g in granted]))

    def _on_message(self, _client, _userdata, message):
        self.messages.put(message)

    def connect(self):
        if self.v5:
            self.client.connect(self.args.host, self.args.port, 60, clean_start=True)
        else:
            self.client.connect(self.args.host, self.args.port, 60)
        self.client.loop_start()
        try:
            _flags, rc = self.connack.get(timeout=self.args.timeout)
        except queue.Empty:
            raise Failure("%s: no CONNACK within %ss" % (self.name, self.args.timeout))
        check(rc == 0, "%s: CONNACK refused with %#x" % (self.name, rc))
        return self

    def subscribe(self, topic, qos):
        result, mid = self.client.subscribe(topic, qos)
        check(result == mqtt.MQTT_ERR_SUCCESS, "%s: subscribe %s failed: %s" % (self.name, topic, result))
        while True:
            try:
                got_mid, granted = self.subacks.get(timeout=self.args.timeout)
            except queue.Empty:
                raise Failure("%s: no SUBACK for %s" % (self.name, topic))
            if got_mid == mid:
                check(granted == [qos], "%s: %s granted %s, wanted [%d]" % (self.name, topic, granted, qos))
                return

    def publish(self, topic, payload, qos, retain=False, properties=None):
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        info.wait_for_publish(self.args.timeout)
        check(info.is_published(), "%s: publish to %s (QoS %d) not completed" % (self.name, topic, qos))

    def receive(self, what):
        try:
            return self.messages.get(timeout=self.args.timeout)
        except queue.Empty:
            raise Failure("%s: nothing received, expected %s" % (self.name, what))

    def expect(self, topic, payload, qos, retain):
        what = "%s %r QoS %d retain %s" % (topic, payload, qos, retain)
        m = self.receive(what)
        got = "%s %r QoS %d retain %s" % (m.topic, m.payload, m.qos, bool(m.retain))
        check(got == what, "%s: received %s, expected %s" % (self.name, got, what))
        return m

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def run(args):
    base = "paho/%s" % uuid.uuid4().hex[:8]
    sub = Client("sub", args).connect()
    sub.subscribe(base + "/#", 2)
    pub = Client("pub", args).connect()

    for qos in (0, 1, 2):
        pub.publish("%s/q%d" % (base, qos), b"qos %d" % qos, qos)
    for qos in (0, 1, 2):
        sub.expect("%s/q%d" % (base, qos), b"qos %d" % qos, qos, False)

    if sub.v5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("origin", "paho")
        pub.publish(base + "/props", b"with properties", 1, properties=props)
        m = sub.expect(base + "/props", b"with properties", 1, False)
        user = getattr(m.properties, "UserProperty", [])
        check(("origin", "paho") in user, "user property lost: %r" % (user,))

    # Retained: forwarded live with retain 0, delivered to a late subscriber with retain 1.
    retained = base + "/retained"
    pub.publish(retained, b"kept", 1, retain=True)
    sub.expect(retained, b"kept", 1, False)
    late = Client("late", args).connect()
    late.subscribe(retained, 1)
    late.expect(retained, b"kept", 1, True)

    # An empty retained payload deletes it: a new subscriber gets only live traffic.
    pub.publish(retained, b"", 1, retain=True)
    sub.expect(retained, b"", 1, False)
    later = Client("later", args).connect()
    later.subscribe(retained, 1)
    pub.publish(retained, b"live", 1)
    later.expect(retained, b"live", 1, False)

    for c in (sub, pub, late, later):
        c.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--cafile")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--websocket", metavar="PATH")
    args = parser.parse_args()
    try:
        run(args)
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("FAIL: network error talking to %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 1
    print("OK paho-mqtt %s, MQTT %s" % (getattr(paho.mqtt, "__version__", "?"), args.protocol))
    return 0


if __name__ == "__main__":
    sys.exit(main())
