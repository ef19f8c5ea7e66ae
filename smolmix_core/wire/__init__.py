"""smolmix_core.wire"""
