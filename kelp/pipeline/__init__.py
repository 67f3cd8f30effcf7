"""One command for the whole pipeline: run folders, stage skipping, report, tracking."""
