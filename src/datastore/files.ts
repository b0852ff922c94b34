// The files datastore: a directory of YAML manifests (*.yaml, *.yml, *.json; the same documents
// `weir lab apply` takes), for plain Linux hosts and the lab. The directory is watched (fs.watch,
// debounced, then the whole directory is re-read: cheap, and an editor's or a ConfigMap's atomic
// replace is a rename that a per-file watch would lose) and rescanned periodically as a safety net
// for filesystems where fs.watch misses events. Dot-files are skipped (editor swap files, a
// ConfigMap volume's ..data directory, whose files appear through the top-level symlinks).
//
// A file is the unit of validity, as a manifest is for `weir lab apply`: a file with any problem
// is rejected whole, with the file, document, object and field named, and its last valid objects
// stay in the view. A removed file takes its objects with it.
import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { KubeObject } from './objects.js';
import { describeObject, objectKey } from './objects.js';
import { checkDuplicates, formatProblem, parseManifestText, type LoadedObject, type ManifestProblem } from './manifest.js';
import {
  DatastoreEmitter, SyncLatch, defaultLog, realTimers,
  type ChangeCallback, type Datastore, type DatastoreHealth, type DatastoreLog, type ErrorCallback, type RejectedObject, type Timers,
} from './datastore.js';

/** Changes within this window are read together (an editor writes, renames and chmods). */
export const DEFAULT_DEBOUNCE_MS = 100;
/** The safety-net rescan. */
export const DEFAULT_RESCAN_MS = 30_000;
/** The name health() reports the directory under. */
export const FILES_SOURCE = 'files';

const MANIFEST_FILE = /\.(ya?ml|json)$/i;

export interface FileDatastoreOptions {
  readonly dir: string;
  readonly debounceMs?: number;
  readonly rescanMs?: number;
  /** false: no fs.watch, only the periodic rescan (filesystems without inotify, e.g. some NFS) */
  readonly watch?: boolean;
  readonly timers?: Timers;
  readonly log?: DatastoreLog;
}

interface FileState {
  /** the text last read (valid or not), so an unchanged file is not parsed again */
  text: string;
  /** its last valid objects */
  objects: KubeObject[];
  /** its problems when the text last read was refused */
  problems?: readonly string[];
}

const idOf = (o: KubeObject): string => `${o.kind}|${objectKey(o)}`;

export class FileDatastore implements Datastore {
  private readonly dir: string;
  private readonly debounceMs: number;
  private readonly rescanMs: number;
  private readonly useWatch: boolean;
  private readonly timers: Timers;
  private readonly log: DatastoreLog;
  private readonly emitter = new DatastoreEmitter();
  private readonly latch = new SyncLatch();
  private readonly files = new Map<string, FileState>();
  private view = new Map<string, KubeObject>();
  private watcher?: FSWatcher;
  private debounce: unknown;
  private rescan: unknown;
  private scanning?: Promise<void>;
  private again = false;
  private stopped = false;
  private connected = false;
  private lastError?: string;
  private relists = 0;
  private reconnects = 0;
  private rejected = 0;
  /** scans done, for tests and logs */
  scans = 0;

  constructor(opts: FileDatastoreOptions) {
    this.dir = path.resolve(opts.dir);
    this.debounceMs = opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.rescanMs = opts.rescanMs ?? DEFAULT_RESCAN_MS;
    this.useWatch = opts.watch ?? true;
    this.timers = opts.timers ?? realTimers;
    this.log = opts.log ?? defaultLog;
  }

  get synced(): boolean {
    return this.latch.done && !this.stopped;
  }

  whenSynced(): Promise<void> {
    return this.latch.promise;
  }

  /** Reads the directory once (synced after it), then watches. Throws if the directory cannot be
   * read at start: a typo in the path must not look like "no policy". */
  async start(): Promise<void> {
    try {
      await readdir(this.dir);
    } catch (err) {
      throw new Error(`policy directory ${JSON.stringify(this.dir)}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
    }
    this.startWatcher();
    await this.scan('start');
    this.scheduleRescan();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.latch.reject(new Error('the datastore was stopped before it synced'));
    this.watcher?.close();
    this.watcher = undefined;
    if (this.debounce !== undefined) this.timers.clearTimeout(this.debounce);
    if (this.rescan !== undefined) this.timers.clearTimeout(this.rescan);
    await this.scanning;
  }

  objects(): KubeObject[] {
    return this.latch.done ? [...this.view.values()] : [];
  }

  on(verb: 'change', cb: ChangeCallback): void;
  on(verb: 'error', cb: ErrorCallback): void;
  on(verb: 'change' | 'error', cb: ChangeCallback | ErrorCallback): void {
    this.emitter.on(verb, cb);
  }

  off(verb: 'change', cb: ChangeCallback): void;
  off(verb: 'error', cb: ErrorCallback): void;
  off(verb: 'change' | 'error', cb: ChangeCallback | ErrorCallback): void {
    this.emitter.off(verb, cb);
  }

  health(): DatastoreHealth {
    return {
      synced: this.synced,
      sources: {
        [FILES_SOURCE]: {
          synced: this.latch.done, connected: this.connected, ...(this.lastError ? { lastError: this.lastError } : {}),
          relists: this.relists, reconnects: this.reconnects, rejected: this.rejected,
        },
      },
    };
  }

  /** Files currently refused, with their problems (their last valid objects are in the view). */
  rejectedFiles(): { file: string; problems: readonly string[] }[] {
    return [...this.files.entries()].filter(([, f]) => f.problems).map(([file, f]) => ({ file, problems: f.problems! }));
  }

  private startWatcher(): void {
    if (this.watcher || this.stopped || !this.useWatch) return;
    try {
      this.watcher = watch(this.dir, { persistent: false }, () => this.changed());
      this.watcher.on('error', (err) => {
        // the directory was removed or replaced: the rescan re-creates the watcher
        this.watcher?.close();
        this.watcher = undefined;
        this.fail(`watching ${this.dir}: ${err.message}`);
      });
    } catch (err) {
      this.fail(`watching ${this.dir}: ${(err as Error).message}`);
    }
  }

  private changed(): void {
    if (this.stopped) return;
    if (this.debounce !== undefined) this.timers.clearTimeout(this.debounce);
    this.debounce = this.timers.setTimeout(() => {
      this.debounce = undefined;
      void this.scan('watch');
    }, this.debounceMs);
  }

  private scheduleRescan(): void {
    if (this.stopped) return;
    this.rescan = this.timers.setTimeout(() => {
      this.rescan = undefined;
      if (!this.watcher && this.useWatch) {
        this.startWatcher();
        if (this.watcher) this.reconnects++;
      }
      void this.scan('rescan').finally(() => this.scheduleRescan());
    }, this.rescanMs);
  }

  private fail(message: string): void {
    this.connected = false;
    if (this.lastError !== message) this.log('warn', message);
    this.lastError = message;
    this.emitter.emitError(new Error(message));
  }

  /** One scan at a time; a change during a scan makes one more. */
  private scan(why: 'start' | 'watch' | 'rescan'): Promise<void> {
    if (this.scanning) {
      this.again = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.again = false;
          const changed = await this.scanOnce();
          if (changed && why === 'rescan') this.relists++;
        } while (this.again && !this.stopped);
      } catch (err) {
        this.log('error', `scanning ${this.dir}: ${(err as Error).stack ?? String(err)}`);
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  /** Reads the directory; returns whether the view changed. */
  private async scanOnce(): Promise<boolean> {
    if (this.stopped) return false;
    this.scans++;
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => !n.startsWith('.') && MANIFEST_FILE.test(n)).sort();
    } catch (err) {
      this.fail(`reading ${this.dir}: ${(err as Error).message}; keeping the last objects read`);
      return false;
    }
    this.connected = true;
    this.lastError = undefined;
    const rejected: RejectedObject[] = [];
    const present = new Set(names.map((n) => path.join(this.dir, n)));
    for (const file of this.files.keys()) if (!present.has(file)) this.files.delete(file);
    for (const file of present) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') { // gone between readdir and read: the next event rescans
          this.files.delete(file);
          continue;
        }
        const had = this.files.get(file);
        const problems = [`${file}: cannot read: ${(err as Error).message}`];
        this.files.set(file, { text: '', objects: had?.objects ?? [], problems });
        rejected.push(this.reject(file, problems, !!had?.objects.length));
        continue;
      }
      const had = this.files.get(file);
      // unchanged: nothing to do, unless it was refused for an object another file defined
      // (which that file may have given up since)
      if (had && had.text === text && !had.problems) continue;
      const problems: ManifestProblem[] = [];
      const loaded = parseManifestText(text, file, problems);
      checkDuplicates(loaded, problems);
      this.checkOtherFiles(file, loaded, problems);
      if (problems.length > 0) {
        const lines = problems.map(formatProblem);
        this.files.set(file, { text, objects: had?.objects ?? [], problems: lines });
        const same = had?.text === text && JSON.stringify(had.problems) === JSON.stringify(lines);
        if (!same) rejected.push(this.reject(file, lines, !!had?.objects.length)); // reported once per content
      } else {
        this.files.set(file, { text, objects: loaded.map((l) => l.object) });
      }
    }
    // The view: files in name order; each object is defined by one file (checkOtherFiles), the
    // first wins should a refused file's last valid objects still hold a duplicate.
    const next = new Map<string, KubeObject>();
    for (const file of [...this.files.keys()].sort()) {
      for (const o of this.files.get(file)!.objects) if (!next.has(idOf(o))) next.set(idOf(o), o);
    }
    const upserts: KubeObject[] = [];
    const deletes: KubeObject[] = [];
    for (const [id, o] of next) {
      const before = this.view.get(id);
      if (!before || JSON.stringify(before) !== JSON.stringify(o)) upserts.push(o);
    }
    for (const [id, o] of this.view) if (!next.has(id)) deletes.push(o);
    this.view = next;
    if (this.stopped) return false;
    if (!this.latch.done) {
      this.latch.resolve();
      this.emitter.emitChange({ upserts: [...next.values()], deletes: [], rejected, initial: true });
      return true;
    }
    if (upserts.length === 0 && deletes.length === 0 && rejected.length === 0) return false;
    this.emitter.emitChange({ upserts, deletes, rejected, initial: false });
    return upserts.length > 0 || deletes.length > 0;
  }

  /** An object another (current) file defines: refused, naming that file. */
  private checkOtherFiles(file: string, loaded: readonly LoadedObject[], problems: ManifestProblem[]): void {
    const owner = new Map<string, string>();
    for (const [other, st] of this.files) if (other !== file) for (const o of st.objects) owner.set(idOf(o), other);
    for (const l of loaded) {
      const other = owner.get(idOf(l.object));
      if (other) {
        problems.push({ file, document: l.document, object: describeObject(l.object), field: 'metadata.name',
          message: `${JSON.stringify(l.object.name)}: duplicate: ${describeObject(l.object)} is also defined in ${other}` });
      }
    }
  }

  private reject(file: string, problems: readonly string[], kept: boolean): RejectedObject {
    this.rejected++;
    this.log('warn', `rejected ${file} (${kept ? 'keeping its last valid objects' : 'none of its objects are in force'}):\n${problems.map((p) => `  ${p}`).join('\n')}`);
    return { kind: 'File', name: path.basename(file), source: file, problems };
  }
}
