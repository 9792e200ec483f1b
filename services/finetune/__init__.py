"""Fine-tuning the embedder on crypto duplicates, so fewer pairs fall in the dedup rule's ambiguous middle.

- pairs.py: the pair builder (`tapewatch finetune pairs`): cross-outlet copies, platform rewrites, hard
  negatives, MRPC, trader feedback; a held-out split that shares no story with training;
- rewrites.py: the rules and templates behind the rewrites and the hard negatives;
- train.py: `tapewatch finetune --pairs DIR --out DIR`: FlagEmbedding's trainer, the model folder;
- report.py: base against fine-tuned on the held-out split (and the hand-labelled pairs), written beside
  the model.
"""
