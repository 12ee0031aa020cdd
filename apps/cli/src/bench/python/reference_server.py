"""The Python reference's PolicyServer as a small robot, for `npm run bench`'s
Python-client comparison: --cameras cameras of --size WIDTHxHEIGHT (RGB uint8
and float32 depth, updated at 30 Hz from a thread, as a camera driver would),
joint_pos[7] and joint_vel[7], on 127.0.0.1:--port. Mirrors
`chiral serve --cameras N --size WxH --depth`."""
import argparse, threading, time
import numpy as np
import chiral

args = argparse.ArgumentParser()
args.add_argument("--port", type=int, required=True)
args.add_argument("--cameras", type=int, default=2)
args.add_argument("--size", default="64x48")
o = args.parse_args()
width, height = (int(v) for v in o.size.split("x"))


class Robot(chiral.PolicyServer):
    def __init__(self):
        super().__init__(host="127.0.0.1", port=o.port)
        threading.Thread(target=self._camera_driver, daemon=True).start()

    def camera_configs(self):
        return [chiral.CameraConfig(name=f"cam_{c}", height=height, width=width, channels=3, has_depth=True,
                                    intrinsics=np.eye(3), extrinsics=np.eye(4)) for c in range(o.cameras)]

    def proprio_configs(self):
        return [chiral.ProprioConfig(name="joint_pos", size=7), chiral.ProprioConfig(name="joint_vel", size=7)]

    def _camera_driver(self):
        frame = 0
        while True:
            for c in range(o.cameras):
                self.update_image(f"cam_{c}", np.full((height, width, 3), (frame + c) % 256, dtype=np.uint8))
                self.update_depth(f"cam_{c}", np.full((height, width), 1.0 + c, dtype=np.float32))
            frame += 1
            time.sleep(1 / 30)

    async def get_metadata(self):
        return {"action_shape": [1, 7]}

    async def reset(self):
        return self._make_obs(), {}

    async def apply_action(self, action):
        pass


Robot().run()
