// The reference runtime for tests/data/faceapi_golden.json: face-api's FaceLandmark68Net
// and FaceLandmark68TinyNet, the package itself, on TensorFlow.js's pure-JavaScript CPU
// backend (faceapi_runtime.mjs).
//
//   npm ci --prefix tools
//   node tools/faceapi_reference.mjs CROPS.json OUT.json
//
// CROPS.json: [{"name", "width", "height", "rgb": base64 of height x width x 3 uint8}].
// OUT.json: {"runtime": {...versions}, "results": {name: {"output": the network's 136
// values (x, y of 68 points as fractions of its 112x112 input; only for 112x112 crops),
// "points": [[x, y] x 68] in crop pixels, as detectLandmarks gives them, and the same from
// the tiny network as "tiny_output" and "tiny_points"}}}.

import { faceapi, finish, images, start } from './faceapi_runtime.mjs';

const networks = { '': faceapi.nets.faceLandmark68Net, tiny_: faceapi.nets.faceLandmark68TinyNet };
const [cropsPath, outputPath] = await start(import.meta.url, 'CROPS', Object.values(networks));

const results = {};
for (const [crop, image] of images(cropsPath)) {
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
finish(outputPath, results, 'crops');
