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


@dataclasses.dataclass(frozen=True)
class RowReader:
    """How to read a dataset's rows for the model: which columns hold the audio, its rate (for plain arrays) and
    the id that error messages name, and `offset`, this part's first row in the whole dataset (messages count rows
    of the whole). The one place a record becomes `read_row`'s arguments: the main process, the DataLoader's workers
    and the stream readers all call `read_batch`."""

    extractor: EncodecFeatureExtractor
    audio_column: str
    rate_column: str | None = None
    id_column: str | None = None
    offset: int = 0

    @property
    def columns(self) -> list[str]:
        """The columns a record needs (no others are read or sent to a reader)."""
        return list(dict.fromkeys(c for c in (self.audio_column, self.rate_column, self.id_column) if c))

    def read_batch(self, records: list[dict], rows: list[int]) -> RowBatch:
        """`records` (rows `rows` of this part, each a dict holding at least `columns`) read and padded."""
        read = []
        for record, row in zip(records, rows, strict=True):
            rate = record[self.rate_column] if self.rate_column else None
            ident = record[self.id_column] if self.id_column else None
            cell = record[self.audio_column]
            read.append(read_row(cell, rate, row + self.offset, ident, self.extractor, self.id_column))
        return pad_rows(read, self.extractor.feature_size)


class _Batches(torch.utils.data.Dataset):
    """Batch k of a map-style dataset, read and padded by `reader` (in a worker process)."""

    def __init__(self, dataset, reader: RowReader, batch_size: int):
        self.dataset, self.reader, self.batch_size = dataset.select_columns(reader.columns), reader, batch_size

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __getitem__(self, batch: int) -> RowBatch:
        rows = list(range(batch * self.batch_size, min((batch + 1) * self.batch_size, len(self.dataset))))
        columns = self.dataset[rows[0] : rows[-1] + 1]  # one slice: a dict of column lists
        records = [{name: values[k] for name, values in columns.items()} for k in range(len(rows))]
        return self.reader.read_batch(records, rows)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # a reader needs none of torch's threads; the main process's encoder does


def read_batches(dataset, reader: RowReader, batch_size: int, num_workers: int, pin_memory: bool = False):
    """`RowBatch`es of `batch_size` consecutive rows (the last may be shorter) of a map-style `dataset`, in row
    order, each read and padded by one of `num_workers` worker processes, which stay 2 batches each ahead. The
    batches come in page-locked memory when `pin_memory` (a model on a GPU). The workers end with the iteration,
    an error or Ctrl-C (the DataLoader's iterator shuts them down when it is closed or collected).

    The worker pads the batch, so that the main process, which drives the model, only hands it on: the tensors
    come through shared memory, where numpy arrays would be pickled through a pipe."""
    loader = torch.utils.data.DataLoader(
        _Batches(dataset, reader, batch_size),
        batch_size=None,  # each item is already a batch
        num_workers=num_workers,
        worker_init_fn=_one_thread if num_workers else None,
        prefetch_factor=2 if num_workers else None,
        pin_memory=pin_memory,
    )
    return iter(loader)


_READER: dict = {}  # a pool process's RowReader, set once by `_start_reader`


def _start_reader(reader: RowReader) -> None:
    _one_thread(0)
    _READER["reader"] = reader


def _read_batch(task: tuple[list, list]) -> RowBatch:
    """`RowReader.read_batch` on one (records, rows) of `read_stream`, in a pool process."""
    return _READER["reader"].read_batch(*task)


def read_stream(dataset, reader: RowReader, batch_size: int, num_workers: int):
    """(records, `RowBatch`) for each `batch_size` consecutive rows of a streaming dataset (the last batch may be
    shorter), in row order, each batch read and padded by one of `num_workers` pool processes and handed back in
    shared memory. This process iterates the stream (cheap for undecoded cells, the form the package reads) and
    hands each batch's `reader.columns` to the pool; at most 2 batches a reader, and never much over 64 rows a
    reader, are in flight, so a long stream is never held in memory. The pool ends with the iteration, an error or
    Ctrl-C.

    Why a pool here and a DataLoader for map-style datasets: a DataLoader's workers would each take a subset of
    the stream's shards (datasets splits them), and their rows would come back interleaved, not in order."""
    import collections
    import multiprocessing
    import threading

    in_flight = threading.BoundedSemaphore(max(2, 64 // batch_size) * num_workers)  # batches handed to the pool
    waiting = collections.deque()  # each handed batch's records, until its RowBatch comes back

    def tasks():  # iterated by the pool's feeding thread
        records, rows = [], []
        for row, record in enumerate(dataset):
            records.append(record)
            rows.append(row)
            if len(records) == batch_size:
                yield hand_over(records, rows)
                records, rows = [], []
        if records:
            yield hand_over(records, rows)

    def hand_over(records, rows):
        in_flight.acquire()
        waiting.append(records)
        return [{name: record[name] for name in reader.columns} for record in records], rows

    # fork, as torch's DataLoader does on Linux: spawn would re-run the caller's script in every reader unless it
    # guards its entry point with `if __name__ == "__main__"`
    context = multiprocessing.get_context("fork")
    with context.Pool(num_workers, initializer=_start_reader, initargs=(reader,)) as pool:
        for batch in pool.imap(_read_batch, tasks()):
            in_flight.release()
            yield waiting.popleft(), batch
