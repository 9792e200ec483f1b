"""`postprocessing`: generated token ids -> text (Triton Python backend).

Per item: TOKENS_BATCH [beam, token] and SEQUENCE_LENGTH [beam] -> OUTPUT, one string per beam.
Parameters (config.pbtxt): tokenizer_dir, skip_special_tokens.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from transformers import AutoTokenizer


def _parameters(args):
    config = json.loads(args["model_config"])
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


class TritonPythonModel:
    def initialize(self, args):
        params = _parameters(args)
        self.tokenizer = AutoTokenizer.from_pretrained(params["tokenizer_dir"])
        self.skip_special_tokens = params.get("skip_special_tokens", "true").strip().lower() == "true"

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
                lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH").as_numpy()
                text = pb_utils.Tensor("OUTPUT", self._decode(tokens, lengths))
                responses.append(pb_utils.InferenceResponse(output_tensors=[text]))
            except Exception as exc:  # one bad request must not fail the others in the batch
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    def _decode(self, tokens, lengths):
        # tokens: [batch, beam, token]; lengths: [batch, beam]
        out = np.empty(lengths.shape, dtype=object)
        for b in range(tokens.shape[0]):
            for k in range(tokens.shape[1]):
                ids = tokens[b, k, : int(lengths[b, k])].tolist()
                text = self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)
                out[b, k] = text.encode("utf-8")
        return out
