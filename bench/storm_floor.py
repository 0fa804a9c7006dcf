#!/usr/bin/python3
"""The broker's floor for an expiry storm: N retained QoS 1 status documents
(the service's shape and size, `maestra/devices/{id}/status`), encoded before
the clock starts and written back to back on one MQTT 3.1.1 connection, as fast
as the broker takes them. A subscriber started by the caller (fleet-sim
--subscribe ... --print-arrivals) records when each arrives; what this measures
is the broker and that subscriber alone, with no Postgres and no service: the
least any service could take to make N devices' offline statuses seen.

    /usr/bin/python3 bench/storm_floor.py --port 1883 --count 100000

Prints one JSON line: {"count","sent_ms","acked_ms","start_ms"} (start_ms: epoch
ms of the first byte written; acked_ms: until the broker acknowledged the last).
Bounded: at most 1,000,000 messages, 120 s for the acks.
"""
import argparse
import json
import socket
import sys
import time
import uuid


def remaining_length(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text):
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def packet(kind, body):
    return bytes([kind]) + remaining_length(len(body)) + body


def publish(topic, payload, packet_id):
    # PUBLISH, QoS 1, retain: 0x30 | 0x02 | 0x01
    return packet(0x33, utf8(topic) + packet_id.to_bytes(2, "big") + payload)


def document(device_id, now):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".000Z"
    return json.dumps({"device_id": device_id, "name": "bench-" + device_id[:8], "device_type": "bench",
                       "hardware_id": "bench-" + device_id[:8], "status": "offline", "last_seen": stamp,
                       "changed_at": stamp, "reason": "timeout"}, separators=(",", ":")).encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--count", type=int, default=100000)
    parser.add_argument("--prefix", default="maestra")
    args = parser.parse_args()
    count = max(1, min(args.count, 1000000))
    now = time.time()
    packets = bytearray()
    for i in range(count):
        device_id = str(uuid.uuid4())
        packets += publish(f"{args.prefix}/devices/{device_id}/status", document(device_id, now), i % 65535 + 1)
    sock = socket.create_connection((args.host, args.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client_id = f"storm-floor-{uuid.uuid4().hex[:8]}"
    # CONNECT: protocol MQTT 3.1.1, clean session, keepalive 120 s
    sock.sendall(packet(0x10, utf8("MQTT") + bytes([4, 0x02]) + (120).to_bytes(2, "big") + utf8(client_id)))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        print(json.dumps({"error": f"no CONNACK: {connack!r}"}))
        return 1
    # The broker's receive maximum for 3.1.1 clients is its max_inflight for
    # outgoing messages only; incoming QoS 1 is acknowledged as it comes.
    start = time.time()
    sock.sendall(packets)
    sent = time.time()
    acked_bytes, deadline = 0, time.time() + 120
    sock.settimeout(1)
    while acked_bytes < 4 * count and time.time() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            continue
        if not chunk:
            break
        acked_bytes += len(chunk)  # PUBACKs only: 4 bytes each
    acked = time.time()
    sock.sendall(bytes([0xE0, 0]))  # DISCONNECT
    sock.close()
    print(json.dumps({"count": count, "start_ms": int(start * 1000), "sent_ms": round((sent - start) * 1000),
                      "acked_ms": round((acked - start) * 1000), "acks": acked_bytes // 4}))
    return 0 if acked_bytes >= 4 * count else 1


if __name__ == "__main__":
    sys.exit(main())
