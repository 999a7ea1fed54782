// What the reference scripts (faceapi_reference.mjs, faceapi_detector_reference.mjs) share:
// face-api, the package itself, on TensorFlow.js's pure-JavaScript CPU backend; images in
// as JSON ([{"name", "width", "height", "rgb": base64 of height x width x 3 uint8}]); the
// results out as JSON ({"runtime": {...versions}, "results": {name: ...}}).
//
// face-api's node-wasm entry point is used because it loads @tensorflow/tfjs (not the
// native tfjs-node); it also requires the wasm backend, which is installed but not used:
// the backend is set to "cpu".

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
export const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
export const { tf } = faceapi;
const packageFile = require.resolve('@vladmandic/face-api/package.json');

// The command line's two paths (exit 2 with the usage line without them), once the CPU
// backend is ready and the networks are loaded from the package's model folder.
export async function start(script, inputName, networks) {
  const [inputPath, outputPath] = process.argv.slice(2);
  if (!inputPath || !outputPath) {
    console.error(`usage: node ${basename(script)} ${inputName}.json OUT.json`);
    process.exit(2);
  }
  await tf.setBackend('cpu');
  await tf.ready();
  if (tf.getBackend() !== 'cpu') throw new Error(`backend is ${tf.getBackend()}, not cpu`);
  for (const network of networks) {
    await network.loadFromDisk(join(dirname(packageFile), 'model'));
  }
  return [inputPath, outputPath];
}

// Each image of the input file as [entry, int32 tensor] (the caller disposes the tensor).
export function* images(inputPath) {
  for (const entry of JSON.parse(readFileSync(inputPath, 'utf8'))) {
    const bytes = Uint8Array.from(Buffer.from(entry.rgb, 'base64'));
    if (bytes.length !== entry.width * entry.height * 3) throw new Error(`${entry.name}: wrong size`);
    yield [entry, tf.tensor3d(bytes, [entry.height, entry.width, 3], 'int32')];
  }
}

export function finish(outputPath, results, noun) {
  const versions = {
    'face-api': require('@vladmandic/face-api/package.json').version,
    tfjs: tf.version_core,
    backend: tf.getBackend(),
    node: process.versions.node,
  };
  writeFileSync(outputPath, JSON.stringify({ runtime: versions, results }));
  console.error(`${Object.keys(results).length} ${noun} read with face-api ${versions['face-api']} on tfjs ${versions.tfjs} (${versions.backend})`);
}
