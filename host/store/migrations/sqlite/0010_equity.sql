-- The account's value at each trading day's close: the equity curve performance is measured on.
CREATE TABLE equity_curve (
    day            TEXT PRIMARY KEY,
    equity         REAL NOT NULL,
    cash           REAL NOT NULL,
    gross_exposure REAL NOT NULL,
    realized_pnl   REAL NOT NULL,
    at_ms          INTEGER NOT NULL
);
