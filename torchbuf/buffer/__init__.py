"""The recording core: step records, per-env slot storage, and the pop API over it.

An adapter's :class:`~torchbuf.buffer.record.StepRecord` is written by
:class:`~torchbuf.buffer.storage.SlotStorage` at per-env cursors; the
:class:`~torchbuf.buffer.recorder.Recorder` pops it into typed batches, and
:class:`~torchbuf.buffer.popapi.PopAPI` is the surface every buffering wrapper shares.
"""
