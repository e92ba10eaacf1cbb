// The metric names a PromQL expression reads: what is left once strings, label matchers, ranges,
// grouping clauses, functions, keywords and numbers are taken out.
// Aggregations, keywords and functions.
const NOT_METRICS = new Set(
  [
    'sum min max avg count stddev stdvar topk bottomk quantile group count_values by without on ',
    'ignoring group_left group_right bool and or unless offset rate irate increase delta idelta deriv ',
    'histogram_quantile absent absent_over_time clamp_min clamp_max vector scalar time timestamp ',
    'label_replace label_join sort sort_desc round ceil floor abs avg_over_time max_over_time ',
    'min_over_time sum_over_time count_over_time last_over_time changes resets predict_linear',
  ]
    .join('')
    .split(' '),
);

export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const [token] of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g))
    if (!NOT_METRICS.has(token) && !/^\d/.test(token)) names.add(token);
  return [...names];
}

/** Label names a selector of `metric` matches on, e.g. {queue="x", state=~"a|b"} → queue, state. */
export function matcherLabels(expr: string): { metric: string; label: string }[] {
  const out: { metric: string; label: string }[] = [];
  for (const m of expr.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}/g))
    for (const l of m[2]!.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)/g))
      out.push({ metric: m[1]!, label: l[1]! });
  return out;
}
