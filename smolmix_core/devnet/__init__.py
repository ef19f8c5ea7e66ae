"""smolmix_core.devnet"""
