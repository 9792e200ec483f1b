"""`preprocessing`: prompt text -> token ids for the TensorRT-LLM engine (Triton Python backend).

Per item: QUERY (one string) -> INPUT_ID (token ids), REQUEST_INPUT_LEN, OUT_END_ID, OUT_PAD_ID.
Parameters (config.pbtxt): tokenizer_dir, add_special_tokens, end_token (empty: the tokenizer's eos).
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
        self.add_special_tokens = params.get("add_special_tokens", "true").strip().lower() == "true"
        end_token = params.get("end_token", "").strip()
        if end_token:
            self.end_id = self.tokenizer.convert_tokens_to_ids(end_token)
            if self.end_id is None or self.end_id == self.tokenizer.unk_token_id:
                raise ValueError(f"end_token {end_token!r} is not a token of {params['tokenizer_dir']}")
        else:
            self.end_id = self.tokenizer.eos_token_id
            if self.end_id is None:
                raise ValueError("the tokenizer has no eos token: set the end_token parameter")
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = self.end_id if pad_id is None else pad_id

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                query = pb_utils.get_input_tensor_by_name(request, "QUERY").as_numpy()
                responses.append(pb_utils.InferenceResponse(output_tensors=self._encode(_texts(query))))
            except Exception as exc:  # one bad request must not fail the others in the batch
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    def _encode(self, texts):
        ids = self.tokenizer(texts, add_special_tokens=self.add_special_tokens)["input_ids"]
        if any(len(row) == 0 for row in ids):
            raise ValueError("empty prompt")
        # Rows padded to the longest; REQUEST_INPUT_LEN tells the engine where each one ends.
        input_id = np.full((len(ids), max(map(len, ids))), self.pad_id, dtype=np.int32)
        for i, row in enumerate(ids):
            input_id[i, : len(row)] = row
        count = len(ids)
        return [
            pb_utils.Tensor("INPUT_ID", input_id),
            pb_utils.Tensor("REQUEST_INPUT_LEN", np.array([[len(row)] for row in ids], dtype=np.int32)),
            pb_utils.Tensor("OUT_END_ID", np.full((count, 1), self.end_id, dtype=np.int32)),
            pb_utils.Tensor("OUT_PAD_ID", np.full((count, 1), self.pad_id, dtype=np.int32)),
        ]
