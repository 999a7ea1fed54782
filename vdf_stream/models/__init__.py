"""Differentiable PyTorch versions of the face models that deepfake pipelines use.

- :mod:`vdf_stream.models.tflite` reads a TensorFlow Lite flatbuffer and runs it as an
  ordinary ``torch.nn.Module`` (weights restored to float32, batch dimension free,
  differentiable, CPU or CUDA, float32 or bfloat16).
- :mod:`vdf_stream.models.zoo` loads the four MediaPipe models (face detection, face
  landmarks, iris landmarks, selfie segmentation) with documented inputs and outputs.

Nothing heavy is imported here: import the submodule you need.
"""
