"""The embedded default: runs Redis Stack and the services as child processes, and replays news."""
