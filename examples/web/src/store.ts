// What the user made survives a reload: the base model, the last adapter and
// the text, in IndexedDB (one key-value store). Failures to save are reported,
// never fatal: the page works without storage (e.g. private windows).
const DB_NAME = 'lowrank-web';
const STORE = 'kv';

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB: open failed'));
  });
}

let db: Promise<IDBDatabase> | null = null;

async function tx<T>(mode: IDBTransactionMode, run: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  db ??= open();
  const d = await db;
  return new Promise((resolve, reject) => {
    const t = d.transaction(STORE, mode);
    const req = run(t.objectStore(STORE));
    t.oncomplete = () => resolve(req.result);
    t.onerror = () => reject(t.error ?? new Error('IndexedDB: transaction failed'));
    t.onabort = () => reject(t.error ?? new Error('IndexedDB: transaction aborted'));
  });
}

/** Stores one value (structured clone: strings, typed arrays, plain objects). */
export function save(key: string, value: unknown): Promise<void> {
  return tx('readwrite', (s) => s.put(value, key)).then(() => undefined);
}

export function load<T>(key: string): Promise<T | undefined> {
  return tx('readonly', (s) => s.get(key) as IDBRequest<T | undefined>);
}

export function remove(key: string): Promise<void> {
  return tx('readwrite', (s) => s.delete(key)).then(() => undefined);
}
