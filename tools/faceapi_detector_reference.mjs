// The reference runtime for tests/data/faceapi_detector_golden.json: face-api's
// TinyFaceDetector, the package itself, on TensorFlow.js's pure-JavaScript CPU backend.
//
//   npm ci --prefix tools
//   node tools/faceapi_detector_reference.mjs IMAGES.json OUT.json
//
// IMAGES.json: [{"name", "width", "height", "rgb": base64 of height x width x 3 uint8}].
// OUT.json: {"runtime": {...versions}, "results": {name: {"output": the network's raw
// 13 x 13 x 25 values at input size 416 (row, column, anchor x (tx, ty, tw, th,
// objectness)), "faces": [{"box": [x_min, y_min, x_max, y_max] in image pixels,
// "score"}] as locateFaces gives them (input size 416, score threshold 0.5)}}}.

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const [imagesPath, outputPath] = process.argv.slice(2);
if (!imagesPath || !outputPath) {
  console.error('usage: node faceapi_detector_reference.mjs IMAGES.json OUT.json');
  process.exit(2);
}

const { tf } = faceapi;
await tf.setBackend('cpu');
await tf.ready();
if (tf.getBackend() !== 'cpu') throw new Error(`backend is ${tf.getBackend()}, not cpu`);

const packageFile = require.resolve('@vladmandic/face-api/package.json');
const network = faceapi.nets.tinyFaceDetector;
await network.loadFromDisk(join(dirname(packageFile), 'model'));
const inputSize = 416;

const results = {};
for (const image of JSON.parse(readFileSync(imagesPath, 'utf8'))) {
  const bytes = Uint8Array.from(Buffer.from(image.rgb, 'base64'));
  if (bytes.length !== image.width * image.height * 3) throw new Error(`${image.name}: wrong size`);
  const tensor = tf.tensor3d(bytes, [image.height, image.width, 3], 'int32');
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

const versions = {
  'face-api': require('@vladmandic/face-api/package.json').version,
  tfjs: tf.version_core,
  backend: tf.getBackend(),
  node: process.versions.node,
};
writeFileSync(outputPath, JSON.stringify({ runtime: versions, results }));
console.error(`${Object.keys(results).length} images read with face-api ${versions['face-api']} on tfjs ${versions.tfjs} (${versions.backend})`);
