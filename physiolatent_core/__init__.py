"""PhysioLatent core library: edit, remove and verify the heart-rate signal in face videos.

Knows nothing of ComfyUI. Data flows one way:
video (video/) -> face (face/) -> edit (editor.py, or network_editor.py over model/) -> verify (rppg/, verify.py)
-> video; pipeline.py runs that whole job on files.

Frames are float32 numpy arrays [T, H, W, 3] in 0..1 (RGB), masks [T, H, W], and
fps travels beside frames everywhere.
"""

from .errors import FaceNotFoundError, InputError, ModelFileError, PhysioLatentError, VideoError

__version__ = "0.1.0"

__all__ = [
    "FaceNotFoundError",
    "InputError",
    "ModelFileError",
    "PhysioLatentError",
    "VideoError",
    "__version__",
]
