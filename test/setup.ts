// Loaded before every test file (npm test: node --import ./test/setup.ts).
// Property tests draw from one fixed fast-check seed so that CI is reproducible;
// FC_SEED=<n> npm test explores other cases (FC_SEED=random picks a fresh one).
import fc from 'fast-check';

const env = process.env.FC_SEED;
const seed = env === 'random' ? (Date.now() ^ (Math.random() * 2 ** 31)) | 0 : Number(env ?? 20261129);
if (!Number.isInteger(seed)) throw new Error(`FC_SEED must be an integer or 'random', got '${env}'`);
fc.configureGlobal({ seed });
