#!/usr/bin/python3
"""The device-registration guide's Python client, verbatim in its behaviour.

Demonstrates that the HTTP shim satisfies the guide: register (201), handle the
409 flow by looking the device up in GET /devices, heartbeat, and the graceful
shutdown PATCH to maintenance. The integration tests run it unchanged against a
real service:  python3 examples/python/guide_client.py http://127.0.0.1:8080 rpi-001
"""
import sys
import time
import uuid
from typing import Optional

import requests


class MaestraDevice:
    def __init__(self, api_url: str = "http://localhost:8080"):
        self.api_url = api_url
        self.device_id: Optional[str] = None

    def register(self, name: str, device_type: str, hardware_id: Optional[str] = None):
        """Register device with Fleet Manager"""
        if hardware_id is None:
            hardware_id = str(uuid.uuid4())

        data = {
            "name": name,
            "device_type": device_type,
            "hardware_id": hardware_id,
            "firmware_version": "1.0.0",
            "metadata": {
                "python_version": "3.11"
            }
        }

        response = requests.post(
            f"{self.api_url}/devices/register",
            json=data
        )
        if response.status_code == 409:
            # Troubleshooting section of the guide: use the existing device.
            devices = requests.get(f"{self.api_url}/devices").json()
            existing = next(d for d in devices if d["hardware_id"] == hardware_id)
            self.device_id = existing["id"]
            print(f"Using existing device: {self.device_id}")
            return self.device_id
        response.raise_for_status()

        result = response.json()
        self.device_id = result["id"]
        print(f"✅ Registered as {self.device_id}")
        return self.device_id

    def heartbeat(self):
        """Send heartbeat to maintain online status"""
        if not self.device_id:
            raise Exception("Device not registered")

        response = requests.post(
            f"{self.api_url}/devices/heartbeat",
            json={"device_id": self.device_id}
        )
        response.raise_for_status()
        return response.json()

    def shutdown(self):
        """Graceful shutdown from the guide: mark the device as in maintenance."""
        requests.patch(f"{self.api_url}/devices/{self.device_id}", json={"status": "maintenance"}).raise_for_status()


if __name__ == "__main__":
    api = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8080"
    hardware_id = sys.argv[2] if len(sys.argv) > 2 else "rpi-001"
    device = MaestraDevice(api)
    device.register("Python Sensor", "raspberry_pi", hardware_id)
    print(device.heartbeat())
    time.sleep(0.1)
    device.shutdown()
    print("shutdown: maintenance")
