"""``tools/benchmark.py``'s machinery: what to run (:mod:`.methods`), running and collecting one run
(:mod:`.runner`), the table (:mod:`.report`) and the figures (:mod:`.plots`)."""
