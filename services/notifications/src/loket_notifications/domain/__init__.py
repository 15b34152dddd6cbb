"""Pure rules of notifications: what a booking event triggers, reminder times, SMS text, keys.

Nothing here reads the clock or does I/O: instants are passed in, so every decision replays.
"""
