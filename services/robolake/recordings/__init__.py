"""Recordings from real rigs turned into robolake episodes: ROS 2 bags (MCAP, rosbag2 directories)
and HDF5 episodes (the ALOHA/ACT and robomimic layouts, :mod:`robolake.recordings.hdf5`).

The data's path, for ``robolake upload recording.mcap``::

    bag (.mcap / .db3 / rosbag2 dir)
      | rosbag.scan: stream every message once -- decode (rosbags, no ROS install), check,
      |              learn the time range, joint names, intrinsics; sha256 of the storage files
      v
    manifest.build_manifest: episode id from (content hash, device), fields from sidecar + flags,
      |                      checked by the contract like any manifest
      v
    capture.CaptureClient.open_episode(manifest)      the same spooled, resumable client as
      |                                               `robolake upload DIR`
      | rosbag.batches: stream the messages again -> (stream, pa.Table) batches in t_ns order,
      |                 skipping rows an interrupted upload already spooled
      v
    EpisodeRecorder.append -> chunks cut, spooled, uploaded; close() -> completion

An HDF5 file takes the same path with :func:`prepare_hdf5` (one recording per episode: a
robomimic file holds several demonstrations), its datasets read in slices of frames.

Topic -> stream comes from :mod:`robolake.recordings.mapping` (built-in defaults, or a YAML/JSON
mapping file); ROS messages -> rows from :mod:`robolake.recordings.messages`. Nothing here talks
to the network: the capture CLI does, so this package depends only on the contract. The choice of
``rosbags`` over ``mcap`` + ``mcap-ros2-support``, with the numbers: ``docs/recordings.md``.
"""

from robolake.recordings.convert import PreparedRecording, Recording, prepare
from robolake.recordings.errors import (
    CorruptRecording,
    MappingError,
    RecordingError,
    UnsupportedMessage,
)
from robolake.recordings.hdf5 import Hdf5Recording, is_hdf5, prepare_hdf5
from robolake.recordings.rosbag import is_bag

__all__ = [
    "CorruptRecording",
    "Hdf5Recording",
    "MappingError",
    "PreparedRecording",
    "Recording",
    "RecordingError",
    "UnsupportedMessage",
    "is_bag",
    "is_hdf5",
    "prepare",
    "prepare_hdf5",
]
