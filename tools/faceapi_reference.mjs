// The reference runtime for tests/data/faceapi_golden.json: face-api's FaceLandmark68Net
// and FaceLandmark68TinyNet, the package itself, on TensorFlow.js's pure-JavaScript CPU
// backend.
//
//   npm ci --prefix tools
//   node tools/faceapi_reference.mjs CROPS.json OUT.json
//
// CROPS.json: [{"name", "width", "height", "rgb": base64 of height x width x 3 uint8}].
// OUT.json: {"runtime": {...versions}, "results": {name: {"output": the network's 136
// values (x, y of 68 points as fractions of its 112x112 input; only for 112x112 crops),
// "points": [[x, y] x 68] in crop pixels, as detectLandmarks gives them, and the same from
// the tiny network as "tiny_output" and "tiny_points"}}}.
//
// face-api's node-wasm entry point is used because it loads @tensorflow/tfjs (not the
// native tfjs-node); it also requires the wasm backend, which is installed but not used:
// the backend is set to "cpu".

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const [cropsPath, outputPath] = process.argv.slice(2);
if (!cropsPath || !outputPath) {
  console.error('usage: node faceapi_reference.mjs CROPS.json OUT.json');
  process.exit(2);
}

const { tf } = faceapi;
await tf.setBackend('cpu');
await tf.ready();
if (tf.getBackend() !== 'cpu') throw new Error(`backend is ${tf.getBackend()}, not cpu`);

const packageFile = require.resolve('@vladmandic/face-api/package.json');
const networks = { '': faceapi.nets.faceLandmark68Net, tiny_: faceapi.nets.faceLandmark68TinyNet };
for (const network of Object.values(networks)) {
  await network.loadFromDisk(join(dirname(packageFile), 'model'));
}

const results = {};
for (const crop of JSON.parse(readFileSync(cropsPath, 'utf8'))) {
  const bytes = Uint8Array.from(Buffer.from(crop.rgb, 'base64'));
  if (bytes.length !== crop.width * crop.height * 3) throw new Error(`${crop.name}: wrong size`);
  const image = tf.tensor3d(bytes, [crop.height, crop.width, 3], 'int32');
  const entry = {};
  for (const [prefix, network] of Object.entries(networks)) {
    if (crop.width === 112 && crop.height === 112) {
      const input = await faceapi.toNetInput(image);
      const output = network.runNet(input);
      entry[`${prefix}output`] = Array.from(output.dataSync());
      output.dispose();
    }
    const landmarks = await network.detectLandmarks(image);
    entry[`${prefix}points`] = landmarks.positions.map((point) => [point.x, point.y]);
  }
  image.dispose();
  results[crop.name] = entry;
}

const versions = {
  'face-api': require('@vladmandic/face-api/package.json').version,
  tfjs: tf.version_core,
  backend: tf.getBackend(),
  node: process.versions.node,
};
writeFileSync(outputPath, JSON.stringify({ runtime: versions, results }));
console.error(`${Object.keys(results).length} crops read with face-api ${versions['face-api']} on tfjs ${versions.tfjs} (${versions.backend})`);
