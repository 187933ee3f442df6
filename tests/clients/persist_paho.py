#!/usr/bin/python3
"""A paho-mqtt client for the persistence tests (tests/persistence_clients.rs).

Connects with a persistent session (MQTT 3.1.1 clean session 0, or MQTT 5.0 Clean Start 0
with a Session Expiry Interval), optionally subscribes, and prints what happens, one line
per event, so the Rust test can compare exact sequences:

    CONNACK session_present=<0|1> rc=<n>
    SUBACK <granted or reason codes, comma separated>
    MSG qos=<q> dup=<0|1> retain=<0|1> topic=<topic> payload=<payload>
    DONE

Modes:
  --exit-after-subscribe   subscribe (--subscribe), print SUBACK, disconnect cleanly, exit 0.
  --until PAYLOAD          receive until a message with this payload arrived, then keep
                           listening for --quiet seconds (to show duplicates), disconnect, exit 0.
Exit status: 0 done, 2 timeout, 3 connection refused or lost.

Works with paho-mqtt 1.6 (Debian 12) and 2.x (callback API version 2): the callbacks take
*args and read what they need from either signature. Acknowledgements: paho sends PUBACK
after on_message returns and PUBCOMP after PUBREL, so the script disconnects from the main
loop, never from a callback, to keep every acknowledgement ahead of the DISCONNECT.
"""

import argparse
import sys
import time

import paho.mqtt.client as mqtt

try:  # paho-mqtt >= 2.0
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError:  # paho-mqtt 1.x
    CallbackAPIVersion = None


def number(value):
    """An int from an int, a paho 1.x ReasonCodes or a paho 2.x ReasonCode."""
    return int(getattr(value, "value", value))


class State:
    def __init__(self):
        self.connack = None
        self.suback = None
        self.disconnected = False
        self.until_seen_at = None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--version", choices=["311", "5"], default="311")
    parser.add_argument("--session-expiry", type=int, default=3600)
    parser.add_argument("--subscribe", action="append", default=[])
    parser.add_argument("--qos", type=int, default=1)
    parser.add_argument("--exit-after-subscribe", action="store_true")
    parser.add_argument("--until")
    parser.add_argument("--quiet", type=float, default=0.3)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--websocket", metavar="PATH", help="MQTT over WebSockets to this path")
    args = parser.parse_args()
    if not args.exit_after_subscribe and args.until is None:
        parser.error("give --exit-after-subscribe or --until")

    state = State()
    v5 = args.version == "5"
    kwargs = {"client_id": args.id, "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311}
    if not v5:
        kwargs["clean_session"] = False
    if CallbackAPIVersion is not None:
        kwargs["callback_api_version"] = CallbackAPIVersion.VERSION2
    if args.websocket:
        kwargs["transport"] = "websockets"
    client = mqtt.Client(**kwargs)
    if args.websocket:
        client.ws_set_options(path=args.websocket)

    def on_connect(_client, _userdata, flags, rc, *_rest):
        present = getattr(flags, "session_present", None)
        if present is None:
            present = flags.get("session present", 0)
        state.connack = (int(bool(present)), number(rc))
        print(f"CONNACK session_present={state.connack[0]} rc={state.connack[1]}", flush=True)
        if state.connack[1] == 0 and args.subscribe:
            client.subscribe([(f, args.qos) for f in args.subscribe])

    def on_subscribe(_client, _userdata, _mid, granted, *_rest):
        state.suback = [number(g) for g in granted]
        print("SUBACK " + ",".join(str(g) for g in state.suback), flush=True)

    def on_message(_client, _userdata, msg):
        payload = msg.payload.decode("utf-8", "replace")
        print(
            f"MSG qos={msg.qos} dup={int(bool(msg.dup))} retain={int(bool(msg.retain))} "
            f"topic={msg.topic} payload={payload}",
            flush=True,
        )
        if args.until is not None and payload == args.until and state.until_seen_at is None:
            state.until_seen_at = time.monotonic()

    def on_disconnect(*_args):
        state.disconnected = True

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect

    if v5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = args.session_expiry
        client.connect(args.host, args.port, keepalive=60, clean_start=False, properties=props)
    else:
        client.connect(args.host, args.port, keepalive=60)

    deadline = time.monotonic() + args.timeout

    def finished():
        if state.connack is not None and state.connack[1] != 0:
            return True
        if args.exit_after_subscribe:
            return state.suback is not None
        return (
            state.until_seen_at is not None
            and time.monotonic() >= state.until_seen_at + args.quiet
        )

    while not finished():
        if time.monotonic() > deadline:
            print("TIMEOUT", flush=True)
            return 2
        if state.disconnected:
            print("CONNECTION LOST", flush=True)
            return 3
        client.loop(timeout=0.05)
    if state.connack[1] != 0:
        return 3

    client.disconnect()
    end = time.monotonic() + 2.0
    while not state.disconnected and time.monotonic() < end:
        client.loop(timeout=0.05)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
