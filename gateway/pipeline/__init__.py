"""One request, stage by stage: admit → shape → decide → attempt → relay → account."""
