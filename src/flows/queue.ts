// A bounded FIFO of items pushed in batches: what does not fit is refused and counted by the
// caller, never buffered without bound.

export class BoundedQueue<T> {
  private batches: T[][] = [];
  private head = 0; // index into batches[0]
  private size = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`queue capacity must be a positive integer, got ${capacity}`);
  }

  get length(): number {
    return this.size;
  }

  /** Appends as much of `items` as fits; returns how many were refused (the tail). */
  push(items: readonly T[]): number {
    const room = this.capacity - this.size;
    if (room <= 0) return items.length;
    const take = items.length <= room ? items.slice() : items.slice(0, room);
    if (take.length > 0) {
      this.batches.push(take);
      this.size += take.length;
    }
    return items.length - take.length;
  }

  /** Appends regardless of capacity (for the few loss-report rows that must not be lost). */
  force(items: readonly T[]): void {
    if (items.length === 0) return;
    this.batches.push(items.slice());
    this.size += items.length;
  }

  /** Removes and returns up to `max` items, oldest first. */
  take(max: number): T[] {
    const out: T[] = [];
    while (out.length < max && this.batches.length > 0) {
      const b = this.batches[0]!;
      const n = Math.min(max - out.length, b.length - this.head);
      for (let i = 0; i < n; i++) out.push(b[this.head + i]!);
      this.head += n;
      if (this.head >= b.length) {
        this.batches.shift();
        this.head = 0;
      }
    }
    this.size -= out.length;
    return out;
  }

  clear(): number {
    const n = this.size;
    this.batches = [];
    this.head = 0;
    this.size = 0;
    return n;
  }
}
