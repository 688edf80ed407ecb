// Page script of `npm run bench -- gpu --browser`: the bench runs in a Worker, as
// the web page's training does (so the cpu backend has its thread pool there).
new Worker('/gpu-worker.js', { type: 'module' });
