"""The edge cache: customers by Host, cache policy, store, origin fetch, HTTP daemon."""
