"""Local Service Discovery (BEP 14): core.py (sans-IO), driver.py (trio multicast)."""
