-- Distinct referrers of a window in one index range, whatever the history: active_since
-- (read by queries) counts, per scope, window start `since_day` and `day`, the referrers
-- active on `day` whose previous active day in the scope is before `since_day` (or who have
-- none). Distinct referrers over [from, to] = SUM(referrers) WHERE since_day = from AND day
-- BETWEEN from AND to: each referrer is counted on its first active day inside the window.
-- Rows are kept for since_day in (day - 92, day] (92 = domain::scope::SINCE_DAYS), so a
-- window of up to 92 days is exact and reads at most 92 rows per scope; a longer one is
-- counted from active_gaps. A referrer's active day whose gap is g adds to min(g, 92) rows.
CREATE TABLE active_since (
    scope TEXT NOT NULL,
    since_day BIGINT NOT NULL,
    day BIGINT NOT NULL,
    referrers BIGINT NOT NULL,
    PRIMARY KEY (scope, since_day, day)
);

-- Backfill from the gap histograms (the same rows the consumer would have written): a
-- referrer active on `day` with gap g counts for since_day = day - n, n in [0, min(g, 92)).
INSERT INTO active_since (scope, since_day, day, referrers)
WITH RECURSIVE back(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM back WHERE n < 91)
SELECT g.scope, g.day - back.n, g.day, SUM(g.referrers)
FROM active_gaps g JOIN back ON back.n < g.gap
GROUP BY g.scope, g.day - back.n, g.day
HAVING SUM(g.referrers) <> 0;
