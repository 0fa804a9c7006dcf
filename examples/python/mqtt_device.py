#!/usr/bin/python3
"""A Maestra device over MQTT, in Python (Debian's python3-paho-mqtt).

Demonstrates the MQTT-first flow of docs/protocol.md end to end:
  1. register over MQTT (maestra/hardware/{hardware_id}/register, reply on
     .../registration; a conflict reply carries the existing id, which we reuse),
  2. connect with a last will ({"state":"offline","session":N} retained, QoS 1 on
     maestra/devices/{id}/presence) and publish the birth right after connecting,
  3. heartbeat every --interval seconds on maestra/devices/{id}/heartbeat,
  4. answer commands: subscribed to maestra/devices/{id}/commands/+ before the
     birth (so commands queued while it was away arrive right after it), each
     command id handled once (a command may come again: delivery is at least
     once), replies "delivered" then "succeeded" (or "failed" with --fail) on
     maestra/devices/{id}/replies/{command_id},
  5. on Ctrl-C / SIGTERM, say a clean goodbye ({"state":"offline","reason":"disconnect"}).
Kill it with SIGKILL instead and the broker publishes the will: the service marks
the device offline within a second.

    python3 examples/python/mqtt_device.py --host 127.0.0.1 --hardware-id rpi-001
    python3 examples/python/mqtt_device.py --fail      # every command fails, with an error text
"""
import argparse
import collections
import json
import os
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    p.add_argument("--prefix", default="maestra", help="topic prefix (default maestra)")
    p.add_argument("--hardware-id", default="python-device-1", help="unique hardware id (MAC, serial, ...)")
    p.add_argument("--name", default="Python Sensor", help="human-readable name")
    p.add_argument("--device-type", default="raspberry_pi", help="device type")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between heartbeats (default 30)")
    p.add_argument("--count", type=int, default=0, help="stop after this many heartbeats (0: run until stopped)")
    p.add_argument("--id-file", default="", help="cache the device id here (register only once)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the registration reply")
    p.add_argument("--fail", action="store_true", help="answer every command with failed (to see a failed result)")
    p.add_argument("--work", type=float, default=0.0, help="seconds each command takes (reported in_progress meanwhile)")
    return p.parse_args()


def register(args):
    """Registers over MQTT and returns the device id (new or already registered)."""
    reply_topic = f"{args.prefix}/hardware/{args.hardware_id}/registration"
    answer = {}
    got = threading.Event()

    def on_message(_client, _userdata, msg):
        answer.update(json.loads(msg.payload or b"{}"))
        got.set()

    client = mqtt.Client(client_id=f"register-{args.hardware_id}"[:64], protocol=mqtt.MQTTv311)
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    try:
        client.subscribe(reply_topic, qos=1)
        time.sleep(0.2)  # let the SUBACK arrive before asking
        body = {"name": args.name, "device_type": args.device_type, "hardware_id": args.hardware_id,
                "firmware_version": "1.0.0", "metadata": {"python_version": sys.version.split()[0]}}
        client.publish(f"{args.prefix}/hardware/{args.hardware_id}/register", json.dumps(body), qos=1)
        if not got.wait(args.timeout):
            raise SystemExit(f"no registration reply on {reply_topic} within {args.timeout} s")
    finally:
        client.loop_stop()
        client.disconnect()
    if answer.get("error") == "conflict" and answer.get("id"):
        print(f"already registered, using existing device {answer['id']}", flush=True)
        return answer["id"]
    if "id" not in answer:
        raise SystemExit(f"registration refused: {answer}")
    print(f"registered as {answer['id']}", flush=True)
    return answer["id"]


def main():
    args = parse_args()
    device_id = ""
    if args.id_file and os.path.exists(args.id_file):
        device_id = open(args.id_file).read().strip()
    if not device_id:
        device_id = register(args)
        if args.id_file:
            with open(args.id_file, "w") as f:
                f.write(device_id)

    presence = f"{args.prefix}/devices/{device_id}/presence"
    heartbeat = f"{args.prefix}/devices/{device_id}/heartbeat"
    commands = f"{args.prefix}/devices/{device_id}/commands/+"
    seen = collections.OrderedDict()  # command ids already handled (the last 1000)
    session = int(time.time() * 1000)  # increases with every connection
    client = mqtt.Client(client_id=f"device-{device_id}", protocol=mqtt.MQTTv311)
    client.will_set(presence, json.dumps({"state": "offline", "session": session}), qos=1, retain=True)

    connected = threading.Event()

    def reply(c, command_id, state, **extra):
        topic = f"{args.prefix}/devices/{device_id}/replies/{command_id}"
        c.publish(topic, json.dumps({"state": state, **extra}), qos=1)

    def run_command(c, command):
        if args.work > 0:
            reply(c, command["id"], "in_progress")
            time.sleep(args.work)
        if args.fail:
            reply(c, command["id"], "failed", error=f"{command['name']}: simulated failure (--fail)")
            print(f"command {command['name']} ({command['id']}) failed on purpose", flush=True)
        else:
            reply(c, command["id"], "succeeded", result={"name": command["name"], "params": command.get("params", {})})
            print(f"command {command['name']} ({command['id']}) succeeded", flush=True)

    def on_message(c, _userdata, msg):
        try:
            command = json.loads(msg.payload)
            command_id = command["id"]
        except (ValueError, KeyError, TypeError):
            print(f"unreadable command on {msg.topic}", flush=True)
            return
        if command_id in seen:  # sent again (at least once): already handled
            reply(c, command_id, "delivered")
            return
        seen[command_id] = True
        if len(seen) > 1000:
            seen.popitem(last=False)
        reply(c, command_id, "delivered")
        threading.Thread(target=run_command, args=(c, command), daemon=True).start()

    def on_connect(c, _userdata, _flags, rc):
        if rc == 0:
            c.subscribe(commands, qos=1)  # before the birth: queued commands follow it
            c.publish(presence, json.dumps({"state": "online", "session": session}), qos=1, retain=True)
            print(f"connected; birth published on {presence}", flush=True)
            connected.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(1, 30)
    client.connect(args.host, args.port, keepalive=15)
    client.loop_start()

    if not connected.wait(args.timeout):
        raise SystemExit(f"could not connect to {args.host}:{args.port} within {args.timeout} s")
    stopping = threading.Event()

    def goodbye(_sig, _frame):
        stopping.set()

    signal.signal(signal.SIGINT, goodbye)
    signal.signal(signal.SIGTERM, goodbye)

    sent = 0
    while not stopping.is_set() and (args.count == 0 or sent < args.count):
        client.publish(heartbeat, b"", qos=1)
        sent += 1
        print(f"heartbeat {sent}", flush=True)
        stopping.wait(args.interval)

    goodbye_msg = json.dumps({"state": "offline", "session": session, "reason": "disconnect"})
    client.publish(presence, goodbye_msg, qos=1, retain=True).wait_for_publish()
    client.disconnect()
    client.loop_stop()
    print("disconnected cleanly", flush=True)


if __name__ == "__main__":
    main()
