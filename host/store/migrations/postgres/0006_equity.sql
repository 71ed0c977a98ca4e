-- The account's value at each trading day's close: the equity curve performance is measured on.
CREATE TABLE equity_curve (
    day            TEXT PRIMARY KEY,
    equity         DOUBLE PRECISION NOT NULL,
    cash           DOUBLE PRECISION NOT NULL,
    gross_exposure DOUBLE PRECISION NOT NULL,
    realized_pnl   DOUBLE PRECISION NOT NULL,
    at_ms          BIGINT NOT NULL
);
