"""smolmix_core.mixnet"""
