//! Pagination, one way for every list: `?limit=N&after=CURSOR` reads at most `N` items (100
//! unless a list says otherwise, at most [`MAX_LIMIT`]) that come after `CURSOR` in the
//! list's order, and the answer's `next` is the cursor of the following page, `null` on the
//! last one. A cursor is an item's id for lists read newest first (alerts, decisions, edits,
//! loop runs, specs, experiments; a log line's sequence number), an agent's or prompt's name,
//! a version's number, a report's date: whatever the list's items are known by.

use overseer_store::Page;

use crate::{ApiError, ApiResult};

/// Most items one page may hold.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// A page asked for: its size and the cursor it starts after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paging {
    pub limit: u32,
    pub after: Option<String>,
}

impl Paging {
    /// The page `limit` and `after` ask for; `default` items when no limit is given. A limit
    /// of 0 is refused; one above [`MAX_LIMIT`] is read as [`MAX_LIMIT`].
    pub fn new(limit: Option<u32>, after: Option<String>, default: u32) -> ApiResult<Paging> {
        let limit = match limit {
            Some(0) => return Err(ApiError::invalid("limit must be at least 1")),
            Some(n) => n.min(MAX_LIMIT),
            None => default.min(MAX_LIMIT),
        };
        Ok(Paging { limit, after })
    }

    /// The cursor as an id, for lists read newest first from the store.
    fn before(&self) -> ApiResult<Option<i64>> {
        self.after
            .as_deref()
            .map(|after| {
                after
                    .parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| {
                        ApiError::invalid(format!("after {after:?}: a positive id is expected"))
                    })
            })
            .transpose()
    }

    /// What to ask the store for: one item more than the page, to tell whether another
    /// follows.
    pub fn store_page(&self) -> ApiResult<Page> {
        Ok(Page {
            before: self.before()?,
            limit: self.limit + 1,
        })
    }

    /// The page of a store list read newest first with [`Paging::store_page`]: at most
    /// `limit` items, and the cursor of the next page when there is one.
    pub fn newest_first<T>(
        &self,
        mut items: Vec<T>,
        id: impl Fn(&T) -> i64,
    ) -> (Vec<T>, Option<String>) {
        let more = items.len() > self.limit as usize;
        items.truncate(self.limit as usize);
        let next = more
            .then(|| items.last().map(|item| id(item).to_string()))
            .flatten();
        (items, next)
    }

    /// The page of a whole list held in memory, in its order: the items after the one whose
    /// key is the cursor. A cursor that names no item is `invalid_request`.
    pub fn slice<T>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> ApiResult<(Vec<T>, Option<String>)> {
        let start = match &self.after {
            None => 0,
            Some(after) => {
                items
                    .iter()
                    .position(|item| key(item) == *after)
                    .ok_or_else(|| {
                        ApiError::invalid(format!("after {after:?} names nothing in this list"))
                    })?
                    + 1
            }
        };
        let mut page: Vec<T> = items.into_iter().skip(start).collect();
        let more = page.len() > self.limit as usize;
        page.truncate(self.limit as usize);
        let next = more.then(|| page.last().map(&key)).flatten();
        Ok((page, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_in_memory_is_read_page_by_page_to_its_end() {
        let items: Vec<u32> = (1..=7).collect();
        let paging = |after: Option<String>| Paging::new(Some(3), after, 100).unwrap();
        let key = |n: &u32| n.to_string();
        let (first, next) = paging(None).slice(items.clone(), key).unwrap();
        assert_eq!((first, next.as_deref()), (vec![1, 2, 3], Some("3")));
        let (second, next) = paging(next).slice(items.clone(), key).unwrap();
        assert_eq!((second, next.as_deref()), (vec![4, 5, 6], Some("6")));
        let (last, next) = paging(next).slice(items.clone(), key).unwrap();
        assert_eq!((last, next), (vec![7], None));
        assert!(paging(Some("99".into())).slice(items, key).is_err());
    }

    #[test]
    fn a_store_list_asks_one_more_and_cuts_it() {
        let paging = Paging::new(Some(2), Some("10".into()), 100).unwrap();
        assert_eq!(
            paging.store_page().unwrap(),
            Page {
                before: Some(10),
                limit: 3
            }
        );
        let (page, next) = paging.newest_first(vec![9, 8, 7], |n| *n);
        assert_eq!((page, next.as_deref()), (vec![9, 8], Some("8")));
        let (page, next) = paging.newest_first(vec![2], |n| *n);
        assert_eq!((page, next), (vec![2], None));
    }

    #[test]
    fn bad_limits_and_cursors_are_refused() {
        assert!(Paging::new(Some(0), None, 100).is_err());
        assert_eq!(Paging::new(Some(5000), None, 100).unwrap().limit, MAX_LIMIT);
        for bad in ["abc", "-1", "0", ""] {
            let paging = Paging::new(None, Some(bad.into()), 100).unwrap();
            assert!(paging.store_page().is_err(), "{bad}");
        }
    }
}
