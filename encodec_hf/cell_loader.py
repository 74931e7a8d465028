"""Reading a dataset's audio for tokenization: one row at a time (`read_row`), in the main process or in worker
processes (`read_batches`; `read_stream` for streaming datasets) that read, decode, convert channels, resample and
pad whole batches (`pad_rows`) while the model encodes.

Why torch's `DataLoader` rather than datasets' `.map(num_proc=...)`: `.map`'s processes each run the whole function,
model included, and CUDA does not survive their fork; the DataLoader's workers only read (numpy, soundfile, soxr),
pad each batch, hand it back in order through shared memory, and leave the model, on whatever device, to the main
process.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from .processing import EncodecFeatureExtractor, read_audio_cell

NO_RATE = (
    "the audio is a plain array with no rate: name the column that holds it with sampling_rate_column= "
    "(--sampling-rate-column), or call it 'sampling_rate'"
)


def read_row(
    cell, rate, index: int, ident, extractor: EncodecFeatureExtractor, id_column: str | None
) -> tuple[np.ndarray | None, str]:
    """Row `index`'s audio as float32 (channels, samples) at the model's rate, and "" ; or None and a message that
    names the row (and its `id_column` value) and why it cannot be read, e.g.
    "row 7 (file='b.wav'): cannot read audio from '/data/b.wav': Format not recognised"."""
    try:
        value, value_rate = read_audio_cell(cell, rate, index)
        if value_rate is None:
            raise ValueError(NO_RATE)
        return extractor.prepare(value, value_rate, index=index), ""
    except Exception as error:  # unreadable files, empty audio, NaN: reported, never dropped silently
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return None, f"row {index}" + (f" ({id_column}={ident!r})" if id_column else "") + f": {reason}"


@dataclasses.dataclass
class RowBatch:
    """Consecutive rows of a dataset, read and padded for the model. `messages` has one entry per row ("" for a
    readable row, else why it cannot be read); the tensors hold the readable rows only, in row order."""

    values: torch.Tensor  # (readable rows, channels, longest) float32, zero past each row's length
    padding_mask: torch.Tensor  # (readable rows, longest) bool, True on real samples
    lengths: list[int]  # each readable row's samples
    messages: list[str]

    def pin_memory(self) -> RowBatch:
        """Page-locked copies of the tensors (the DataLoader's pin_memory thread calls this), so that copies to a
        GPU can run while it works."""
        return dataclasses.replace(self, values=self.values.pin_memory(), padding_mask=self.padding_mask.pin_memory())


def pad_rows(read: list, channels: int) -> RowBatch:
    """Rows read by `read_row` ((array or None, message) each, arrays (channels, samples)) as one `RowBatch`.

    Example: arrays of 3 and 5 samples and one unreadable row -> values (2, channels, 5) with the first row's last
    2 samples 0, padding_mask [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], lengths [3, 5], messages ["", "", "row 2: ..."].
    """
    arrays = [array for array, _ in read if array is not None]
    lengths = [array.shape[-1] for array in arrays]
    longest = max(lengths, default=0)
    values = np.zeros((len(arrays), channels, longest), dtype=np.float32)  # numpy: it copies read-only arrays too
    padding_mask = np.zeros((len(arrays), longest), dtype=bool)
    for k, array in enumerate(arrays):
        values[k, :, : lengths[k]] = array
        padding_mask[k, : lengths[k]] = True
    messages = [message for _, message in read]
    return RowBatch(torch.from_numpy(values), torch.from_numpy(padding_mask), lengths, messages)


class _Rows(torch.utils.data.Dataset):
    """Row i of a map-style dataset, read by `read_row` (in a worker process): (array or None, message)."""

    def __init__(self, dataset, extractor, audio_column, rate_column, id_column, offset):
        columns = [c for c in (audio_column, rate_column, id_column) if c]
        self.dataset = dataset.select_columns(list(dict.fromkeys(columns)))
        self.extractor, self.offset = extractor, offset
        self.audio_column, self.rate_column, self.id_column = audio_column, rate_column, id_column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, row: int):
        record = self.dataset[row]
        rate = record[self.rate_column] if self.rate_column else None
        ident = record[self.id_column] if self.id_column else None
        return read_row(record[self.audio_column], rate, row + self.offset, ident, self.extractor, self.id_column)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # a reader needs none of torch's threads; the main process's encoder does


def read_batches(
    dataset,
    extractor: EncodecFeatureExtractor,
    audio_column: str,
    rate_column: str | None,
    id_column: str | None,
    batch_size: int,
    num_workers: int,
    offset: int = 0,
    pin_memory: bool = False,
):
    """`RowBatch`es of `batch_size` consecutive rows (the last may be shorter) of a map-style `dataset`, in row
    order, each read and padded by one of `num_workers` worker processes, which stay 2 batches each ahead. The
    batches come in page-locked memory when `pin_memory` (a model on a GPU). The workers end with the iteration,
    an error or Ctrl-C (the DataLoader's iterator shuts them down when it is closed or collected).

    The worker pads the batch, so that the main process, which drives the model, only hands it on: the tensors
    come through shared memory, where numpy arrays would be pickled through a pipe."""
    starts = range(0, len(dataset), batch_size)
    loader = torch.utils.data.DataLoader(
        _Rows(dataset, extractor, audio_column, rate_column, id_column, offset),
        batch_sampler=[range(start, min(start + batch_size, len(dataset))) for start in starts],
        collate_fn=functools.partial(pad_rows, channels=extractor.feature_size),
        num_workers=num_workers,
        worker_init_fn=_one_thread if num_workers else None,
        prefetch_factor=2 if num_workers else None,
        pin_memory=pin_memory,
    )
    return iter(loader)


_READER: dict = {}  # a pool process's extractor and id column, set once by `_start_reader`


def _start_reader(extractor, id_column) -> None:
    _one_thread(0)
    _READER.update(extractor=extractor, id_column=id_column)


def _read_batch(tasks: list) -> RowBatch:
    """`read_row` on each (cell, rate, index, ident) of one batch of `read_stream`, padded (`pad_rows`), in a pool
    process."""
    extractor, id_column = _READER["extractor"], _READER["id_column"]
    return pad_rows([read_row(*task, extractor, id_column) for task in tasks], extractor.feature_size)


def read_stream(
    dataset,
    extractor: EncodecFeatureExtractor,
    audio_column: str,
    rate_column: str | None,
    id_column: str | None,
    batch_size: int,
    num_workers: int,
    offset: int = 0,
):
    """(records, `RowBatch`) for each `batch_size` consecutive rows of a streaming dataset (the last batch may be
    shorter), in row order, each batch read and padded by one of `num_workers` pool processes and handed back in
    shared memory. This process iterates the stream (cheap for undecoded cells, the form the package reads) and
    hands each batch of cells to the pool; at most 2 batches a reader, and never much over 64 rows a reader, are
    in flight, so a long stream is never held in memory. The pool ends with the iteration, an error or Ctrl-C.

    Why a pool here and a DataLoader for map-style datasets: a DataLoader's workers would each take a subset of
    the stream's shards (datasets splits them), and their rows would come back interleaved, not in order."""
    import collections
    import multiprocessing
    import threading

    in_flight = threading.BoundedSemaphore(max(2, 64 // batch_size) * num_workers)  # batches handed to the pool
    waiting = collections.deque()  # each handed batch's records, until its RowBatch comes back

    def batches():
        records = []
        for index, record in enumerate(dataset):
            records.append((index, record))
            if len(records) == batch_size:
                yield records
                records = []
        if records:
            yield records

    def tasks():  # iterated by the pool's feeding thread
        for records in batches():
            in_flight.acquire()
            waiting.append([record for _, record in records])
            yield [
                (
                    record[audio_column],
                    record[rate_column] if rate_column else None,
                    index + offset,
                    record[id_column] if id_column else None,
                )
                for index, record in records
            ]

    # fork, as torch's DataLoader does on Linux: spawn would re-run the caller's script in every reader unless it
    # guards its entry point with `if __name__ == "__main__"`
    context = multiprocessing.get_context("fork")
    with context.Pool(num_workers, initializer=_start_reader, initargs=(extractor, id_column)) as pool:
        for batch in pool.imap(_read_batch, tasks()):
            in_flight.release()
            yield waiting.popleft(), batch
