// The reference runtime for tests/data/faceapi_detector_golden.json: face-api's
// TinyFaceDetector, the package itself, on TensorFlow.js's pure-JavaScript CPU backend
// (faceapi_runtime.mjs).
//
//   npm ci --prefix tools
//   node tools/faceapi_detector_reference.mjs IMAGES.json OUT.json
//
// IMAGES.json: [{"name", "width", "height", "rgb": base64 of height x width x 3 uint8}].
// OUT.json: {"runtime": {...versions}, "results": {name: {"output": the network's raw
// 13 x 13 x 25 values at input size 416 (row, column, anchor x (tx, ty, tw, th,
// objectness)), "faces": [{"box": [x_min, y_min, x_max, y_max] in image pixels,
// "score"}] as locateFaces gives them (input size 416, score threshold 0.5)}}}.

import { faceapi, finish, images, start } from './faceapi_runtime.mjs';

const network = faceapi.nets.tinyFaceDetector;
const [imagesPath, outputPath] = await start(import.meta.url, 'IMAGES', [network]);
const inputSize = 416;

const results = {};
for (const [image, tensor] of images(imagesPath)) {
  const output = await network.forward(tensor, inputSize);
  const detections = await network.locateFaces(tensor, { inputSize, scoreThreshold: 0.5 });
  results[image.name] = {
    output: Array.from(output.dataSync()),
    faces: detections.map((face) => ({
      box: [face.box.x, face.box.y, face.box.x + face.box.width, face.box.y + face.box.height],
      score: face.score,
    })),
  };
  output.dispose();
  tensor.dispose();
}
finish(outputPath, results, 'images');
