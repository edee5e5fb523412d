"""Mainline DHT (BEP 5, with BEP 42, 43, 44, 51): sans-IO core and its trio driver."""
