import type { Histogram, LabelValues } from 'prom-client';
import { onCollect } from './collect-hooks.js';

/**
 * prom-client 15's record of one labelled histogram series (the values of `Histogram#hashMap`,
 * created by `zero(labels)`, which keeps the labels object it was given). Not in its types: the
 * unit tests of the metrics read the exposition through a real registry, so a change of this
 * shape in a prom-client upgrade fails there.
 */
interface HistogramRecord {
  readonly labels: object;
  readonly bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

/** One labelled series of a {@link ScrapedHistogram}: observations since the last scrape. */
export class ScrapedSeries {
  count = 0;
  sum = 0;
  /** Observations per bucket (not cumulative); one beyond the last bound is in none. */
  readonly perBucket: Float64Array;

  constructor(
    readonly labels: object,
    private readonly bounds: readonly number[],
  ) {
    this.perBucket = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    this.count++;
    this.sum += value;
    const { bounds } = this;
    let i = 0;
    // bounds are inclusive, as prom-client's
    while (i < bounds.length && value > bounds[i]) i++;
    if (i < bounds.length) this.perBucket[i]++;
  }
}

/**
 * A prom-client histogram observed on a hot path: each observation is a few additions here, and
 * the counts are added to prom-client's series when the histogram is collected (each scrape).
 * prom-client's own `observe` hashes and validates the labels on every call, also through a
 * label child; for a duration per message that was a few percent of the service's CPU.
 *
 * Series are resolved once per label set (`series(labels)`): label values must come from bounded
 * sets, as for any metric.
 */
export class ScrapedHistogram<T extends string> {
  private readonly all: ScrapedSeries[] = [];
  /** Hands over what is counted and stops flushing into the histogram (its owner is closing). */
  readonly detach: () => void;

  constructor(
    private readonly histogram: Histogram<T>,
    /** The histogram's buckets, as it was created with. */
    private readonly bounds: readonly number[],
  ) {
    const remove = onCollect(histogram, () => this.flush());
    this.detach = () => {
      this.flush();
      remove();
    };
  }

  series(labels: LabelValues<T>): ScrapedSeries {
    const series = new ScrapedSeries(labels, this.bounds);
    this.all.push(series);
    return series;
  }

  private flush(): void {
    for (const series of this.all) {
      if (series.count === 0) continue;
      const record = this.record(series.labels);
      this.bounds.forEach((bound, i) => {
        record.bucketValues[bound] += series.perBucket[i];
        series.perBucket[i] = 0;
      });
      record.sum += series.sum;
      record.count += series.count;
      series.count = 0;
      series.sum = 0;
    }
  }

  /** prom-client's record of a series, created (zeroed) on first use or after a reset. */
  private record(labels: LabelValues<T>): HistogramRecord {
    const find = (): HistogramRecord | undefined =>
      Object.values(
        (this.histogram as unknown as { hashMap: Record<string, HistogramRecord> }).hashMap,
      ).find((record) => record.labels === labels);
    let record = find();
    if (!record) {
      this.histogram.zero(labels);
      record = find();
    }
    if (!record || this.bounds.some((bound) => !(bound in record.bucketValues))) {
      throw new Error("prom-client's histogram record changed shape or buckets differ");
    }
    return record;
  }
}
