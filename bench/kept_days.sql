-- The partitions of the past week, as a deployment keeps them at the default retention (7
-- days). Every benchmark database has them: each partition a statement may read used to cost
-- every claim and acknowledgement (BENCHMARKS.md, "What each kept day cost claims and
-- acknowledgements").
SELECT webhooks._create_partition(parent, (now() AT TIME ZONE 'UTC')::date - day)
FROM unnest(ARRAY['events', 'deliveries', 'attempts', 'successes']) parent,
     generate_series(2, 7) day;
