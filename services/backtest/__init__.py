"""`tapewatch backtest`: news through the real pipeline in event time, quotes by the reference engine over
real bars, with and without the approved signals, against a hindsight oracle."""
