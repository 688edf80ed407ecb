export * from './optimizer.ts';
export * from './adam.ts';
export * from './sgd.ts';
export * from './schedules.ts';
export * from './clip.ts';
