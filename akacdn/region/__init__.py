"""Region: membership and intra-region IP takeover (pure decisions in `takeover`)."""
