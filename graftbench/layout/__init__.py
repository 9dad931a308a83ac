"""Document-layout task (PubLayNet-like): procedural layouts, their metrics and renderer."""
