"""An RTSP server on 127.0.0.1 for the agent's tests: GStreamer's gst-rtsp-server, streaming a
video file as H.264 (what IP cameras send), each client from the start of the file.

Run by Debian's python3, which has the GObject bindings (not the project's virtualenv):

    /usr/bin/python3 tests/agent/rtsp_server.py PORT VIDEO.avi

Prints `ready rtsp://127.0.0.1:PORT/street` once it listens. Needs the Debian packages
python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base, -good and -ugly (x264enc);
`.ci/run` installs them.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

MOUNT = "/street"


def main(port: str, video: str) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # The test video is Motion JPEG (what OpenCV's VideoWriter always has); cameras send H.264,
    # so it is re-encoded, with a key frame every second so that a client starts quickly.
    factory.set_launch(
        f'( filesrc location="{video}" ! avidemux ! jpegdec ! videoconvert '
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print(f"ready rtsp://127.0.0.1:{port}{MOUNT}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
