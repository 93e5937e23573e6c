"""Authoritative DNS: TLNS (base domain, referrals) and LLNS (map subzone, edge answers)."""
