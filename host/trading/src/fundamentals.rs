//! The `fundamentals` interface as agents reach it: companies' filings from Polygon's
//! financials (`/vX/reference/financials`), bounded by the call's as-of day as `market` is. A
//! filing is known from the day it was filed, so only those filed on or before as-of are
//! answered; the replayed market's 2012 reads the filings of 2011, never the year after.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use overseer_kernel::capability::{CallContext, Provider};
use overseer_providers::polygon::{self, Polygon};
use overseer_sandbox::{Filing, GuestError, LineItem};

use crate::capability::{call_as_of, known_symbol};
use crate::desk::Trading;

/// Serves `fundamentals` from Polygon, for the symbols the market serves.
pub struct FundamentalsProvider {
    trading: Trading,
    polygon: Polygon,
}

impl FundamentalsProvider {
    pub fn new(trading: Trading, polygon: Polygon) -> Self {
        FundamentalsProvider { trading, polygon }
    }
}

impl Provider<dyn overseer_sandbox::Fundamentals> for FundamentalsProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Fundamentals> {
        Arc::new(CallFundamentals {
            trading: self.trading.clone(),
            polygon: self.polygon.clone(),
            as_of: call_as_of(&self.trading, call),
        })
    }

    /// Shadow runs read what real calls read: nothing is changed by reading.
    fn shadow(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Fundamentals> {
        self.real(call)
    }
}

/// The filings one call may see: those filed by its as-of day.
struct CallFundamentals {
    trading: Trading,
    polygon: Polygon,
    as_of: NaiveDate,
}

fn wit_filing(filing: polygon::Filing) -> Filing {
    let day = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    Filing {
        timeframe: filing.timeframe,
        fiscal_year: filing.fiscal_year,
        fiscal_period: filing.fiscal_period,
        start_date: day(filing.start_date),
        end_date: day(filing.end_date),
        filing_date: filing.filing_date.to_string(),
        items: filing
            .items
            .into_iter()
            .map(|i| LineItem {
                statement: i.statement,
                name: i.name,
                value: i.value,
                unit: i.unit,
            })
            .collect(),
    }
}

#[async_trait]
impl overseer_sandbox::Fundamentals for CallFundamentals {
    async fn filings(
        &self,
        symbol: &str,
        timeframe: &str,
        limit: u32,
    ) -> Result<Vec<Filing>, GuestError> {
        known_symbol(self.trading.market().as_ref(), symbol)?;
        let filings = self
            .polygon
            .financials(symbol, timeframe, self.as_of, limit)
            .await
            .map_err(|e| match e.code() {
                "provider_invalid" => GuestError::InvalidInput(e.to_string()),
                _ => GuestError::Unavailable(e.to_string()),
            })?;
        Ok(filings
            .into_iter()
            .take(limit as usize)
            .map(wit_filing)
            .collect())
    }
}
