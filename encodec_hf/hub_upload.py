"""Building and publishing Hub folders (remote code, model card, push): not written yet.

Issue 3 fills this module and the `encodec-hf upload` command. Until then, `encodec-hf convert` writes a folder
that `EncodecModel.from_pretrained` (this package's and transformers') reads, which can be uploaded by hand.
"""
