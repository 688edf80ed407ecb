export { crossEntropy, type CrossEntropyOptions } from '@lowrank/core';
