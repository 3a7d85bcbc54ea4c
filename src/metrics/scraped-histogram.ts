import type { Histogram, LabelValues } from 'prom-client';
import type { TraceIds } from '../tracing/message-tracing.js';
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
  /**
   * With `enableExemplars`: the last exemplar per bucket, by upper bound (`-1` for `+Inf`), as
   * prom-client's `observe({ exemplarLabels })` keeps it and its OpenMetrics output prints it.
   */
  readonly bucketExemplars?: Record<number, Exemplar | null>;
  sum: number;
  count: number;
}

/** prom-client's exemplar as its registry prints it (`timestamp` in seconds). */
interface Exemplar {
  labelSet: Readonly<Record<string, string>>;
  value: number;
  timestamp: number;
}

/** prom-client's `+Inf` bucket key in `bucketExemplars`. */
const INF = -1;

/** One labelled series of a {@link ScrapedHistogram}: observations since the last scrape. */
export class ScrapedSeries {
  count = 0;
  sum = 0;
  /** Observations per bucket (not cumulative); one beyond the last bound is in none. */
  readonly perBucket: Float64Array;
  /**
   * With exemplars: the last traced observation per bucket since the last scrape (index
   * `bounds.length` for `+Inf`); undefined when the histogram keeps none.
   */
  readonly exemplars: (Exemplar | undefined)[] | undefined;

  constructor(
    readonly labels: object,
    private readonly bounds: readonly number[],
    withExemplars: boolean,
  ) {
    this.perBucket = new Float64Array(bounds.length);
    this.exemplars = withExemplars ? new Array<undefined>(bounds.length + 1) : undefined;
  }

  /** Counts `value`; `trace` (a sampled span's ids) becomes its bucket's exemplar. */
  observe(value: number, trace?: TraceIds): void {
    this.count++;
    this.sum += value;
    const { bounds } = this;
    let i = 0;
    // bounds are inclusive, as prom-client's
    while (i < bounds.length && value > bounds[i]) i++;
    if (i < bounds.length) this.perBucket[i]++;
    if (trace !== undefined && this.exemplars !== undefined) {
      this.exemplars[i] = {
        labelSet: { trace_id: trace.trace_id, span_id: trace.span_id },
        value,
        timestamp: Date.now() / 1000,
      };
    }
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

  /**
   * Whether observations keep exemplars: prom-client creates its histograms with
   * `enableExemplars` only on an OpenMetrics registry, the only format that prints them.
   */
  private readonly withExemplars: boolean;

  constructor(
    private readonly histogram: Histogram<T>,
    /** The histogram's buckets, as it was created with. */
    private readonly bounds: readonly number[],
  ) {
    this.withExemplars =
      (histogram as unknown as { enableExemplars?: unknown }).enableExemplars === true;
    const remove = onCollect(histogram, () => this.flush());
    this.detach = () => {
      this.flush();
      remove();
    };
  }

  series(labels: LabelValues<T>): ScrapedSeries {
    const series = new ScrapedSeries(labels, this.bounds, this.withExemplars);
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
      const { exemplars } = series;
      const kept = record.bucketExemplars;
      if (exemplars !== undefined && kept !== undefined) {
        exemplars.forEach((exemplar, i) => {
          if (exemplar === undefined) return;
          kept[i < this.bounds.length ? this.bounds[i] : INF] = exemplar;
          exemplars[i] = undefined;
        });
      }
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
    if (
      !record ||
      this.bounds.some((bound) => !(bound in record.bucketValues)) ||
      (this.withExemplars && typeof record.bucketExemplars !== 'object')
    ) {
      throw new Error("prom-client's histogram record changed shape or buckets differ");
    }
    return record;
  }
}
