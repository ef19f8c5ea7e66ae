"""smolmix_core.devices"""
