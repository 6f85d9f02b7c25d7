"""Counting the frames PyAV decodes, for tests of bounded video reading."""

from __future__ import annotations

__all__ = ["DecodeCounter"]


class DecodeCounter:
    """With ``install(monkeypatch)``, every ``av.open`` container counts the frames decoded from it in ``decoded``;
    ``claimed``, when set, is the frame count its video stream reports instead of its own (an under-counting header)."""

    def __init__(self, claimed: int | None = None):
        self.decoded, self.claimed = 0, claimed

    def install(self, monkeypatch) -> DecodeCounter:
        import av

        original = av.open
        monkeypatch.setattr(av, "open", lambda *args, **kwargs: _Container(original(*args, **kwargs), self))
        return self


class _Stream:
    def __init__(self, stream, frames: int):
        self._stream, self.frames = stream, frames

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _Streams(list):
    video: list


class _Container:
    def __init__(self, container, counter: DecodeCounter):
        self._container, self._counter = container, counter

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._container.__exit__(*exc)

    @property
    def streams(self):
        streams = self._container.streams
        if self._counter.claimed is None:
            return streams
        claimed = _Streams(streams)
        claimed.video = [_Stream(s, self._counter.claimed) for s in streams.video]
        return claimed

    def demux(self, stream):
        return self._container.demux(getattr(stream, "_stream", stream))

    def decode(self, stream):
        for frame in self._container.decode(getattr(stream, "_stream", stream)):
            self._counter.decoded += 1
            yield frame
