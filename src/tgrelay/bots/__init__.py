"""Connected bots: connect by token, rotate, disconnect, and watch their health."""
