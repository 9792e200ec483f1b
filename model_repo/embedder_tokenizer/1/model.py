"""`embedder_tokenizer`: text -> BGE-M3 token ids and attention mask (Triton Python backend).

Per item: TEXT (one string) -> INPUT_IDS, ATTENTION_MASK (int64, the ONNX model's input types).
Parameters (config.pbtxt): tokenizer_dir, max_tokens (longer texts are truncated).

Every request in one execute() call is padded to the same width: the ONNX step's dynamic batcher
only merges requests whose shapes match, so equal widths let a burst of stories run as one batch.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from transformers import AutoTokenizer


def _parameters(args):
    config = json.loads(args["model_config"])
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


def _texts(tensor):
    return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in tensor.reshape(-1)]


class TritonPythonModel:
    def initialize(self, args):
        params = _parameters(args)
        self.tokenizer = AutoTokenizer.from_pretrained(params["tokenizer_dir"])
        self.max_tokens = int(params["max_tokens"])

    def execute(self, requests):
        texts = []
        for request in requests:
            texts.append(_texts(pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()))
        flat = [text for batch in texts for text in batch]
        encoded = self.tokenizer(
            flat, padding="longest", truncation=True, max_length=self.max_tokens, return_tensors="np"
        )
        input_ids = encoded["input_ids"].astype(np.int64)
        attention_mask = encoded["attention_mask"].astype(np.int64)

        responses, start = [], 0
        for batch in texts:
            stop = start + len(batch)
            outputs = [
                pb_utils.Tensor("INPUT_IDS", input_ids[start:stop]),
                pb_utils.Tensor("ATTENTION_MASK", attention_mask[start:stop]),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            start = stop
        return responses
